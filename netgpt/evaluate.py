"""Evaluation report of a stage's predictions: overall metrics, breakdowns by platform and by
observation period, confusion matrix, PNG plots; written as RUN_DIR/<stage>/eval_<split>.*"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from graphstore.atomic import write_text
from graphstore.errors import UserError
from graphstore.schema import DAY, PLATFORM_NAMES_EN
from graphstore.store import GraphStore

from .metrics import NUM_LEVELS, confusion_matrix, regression_metrics, round_levels

STAGE_ORDER = ("finetune", "pretrain")  # the default stage is the latest one present
# observation periods (name, lowest age, highest age in days): an age falls in the first period whose
# highest age it does not exceed
PERIODS = (("<=3 days", 0.0, 3.0), ("4-7 days", 3.0, 7.0), (">7 days", 7.0, float("inf")))


def default_stage(run_dir: str | Path, split: str) -> str:
    """The latest stage of a run that has predictions for `split`."""
    for stage in STAGE_ORDER:
        if (Path(run_dir) / stage / f"predictions_{split}.parquet").is_file():
            return stage
    raise UserError(f"{run_dir}: no predictions_{split}.parquet in any of {', '.join(STAGE_ORDER)}")


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """node, y_true, y_pred arrays of a predictions parquet (UserError if missing or malformed)."""
    if not path.is_file():
        raise UserError(f"{path}: no such predictions file")
    table = pq.read_table(path)
    missing = {"node", "y_true", "y_pred"} - set(table.column_names)
    if missing:
        raise UserError(f"{path}: missing columns {', '.join(sorted(missing))}")
    out = {c: table.column(c).to_numpy() for c in ("node", "y_true", "y_pred")}
    bad = ~np.isfinite(out["y_pred"])
    if bad.any():
        raise UserError(f"{path}: row {int(np.argmax(bad))}: field 'y_pred' is not finite")
    return out


def observation_period(age_days: np.ndarray) -> np.ndarray:
    """Index into PERIODS of each observation age (ctime - post_time, days)."""
    highest = np.array([hi for _, _, hi in PERIODS[:-1]])
    return np.searchsorted(highest, np.asarray(age_days, dtype=np.float64), side="left").astype(np.int64)


def evaluate_predictions(y_true: np.ndarray, y_pred: np.ndarray, platform: np.ndarray, age_days: np.ndarray) -> dict:
    """Overall metrics, by platform, by observation period, and the confusion matrix."""
    report = {"overall": regression_metrics(y_true, y_pred), "by_platform": {}, "by_period": {}}
    for p, name in enumerate(PLATFORM_NAMES_EN):
        m = platform == p
        if m.any():
            report["by_platform"][name] = regression_metrics(y_true[m], y_pred[m])
    period = observation_period(age_days)
    for i, (name, _, _) in enumerate(PERIODS):
        m = period == i
        report["by_period"][name] = regression_metrics(y_true[m], y_pred[m])
    report["confusion"] = confusion_matrix(y_true, y_pred).tolist()
    return report


def _markdown(report: dict, title: str) -> str:
    def rows(d: dict) -> list[str]:
        return [f"| {k} | {v['n']} | {v['acc']:.4f} | {v['mse']:.4f} | {v['mae']:.4f} |" for k, v in d.items()]

    head = ["| group | n | ACC | MSE | MAE |", "|---|---|---|---|---|"]
    lines = [f"# {title}", "", *head, *rows({"all": report["overall"]}), "", "## By platform", "", *head,
             *rows(report["by_platform"]), "", "## By observation period (ctime - post_time)", "", *head,
             *rows(report["by_period"]), "", "## Confusion matrix (rows: true level, columns: rounded prediction)", "",
             "| true \\ pred | " + " | ".join(str(i) for i in range(NUM_LEVELS)) + " |",
             "|---" * (NUM_LEVELS + 1) + "|"]
    lines += [f"| {i} | " + " | ".join(str(c) for c in row) + " |" for i, row in enumerate(report["confusion"])]
    return "\n".join(lines) + "\n"


def _save(fig, prefix: Path, name: str) -> str:
    """Writes fig as <prefix>_<name>.png (atomically) and closes it; returns the file name."""
    import matplotlib.pyplot as plt

    path = prefix.with_name(f"{prefix.name}_{name}.png")
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path.name


def _levels_figure(y_true: np.ndarray, y_pred: np.ndarray, where: str):
    """Bar chart: samples per true level and per rounded predicted level."""
    import matplotlib.pyplot as plt

    levels = np.arange(NUM_LEVELS)
    t = np.bincount(np.rint(y_true).astype(np.int64).clip(0, NUM_LEVELS - 1), minlength=NUM_LEVELS)
    p = np.bincount(round_levels(y_pred), minlength=NUM_LEVELS)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(levels - 0.2, t, width=0.4, label="true")
    ax.bar(levels + 0.2, p, width=0.4, label="predicted (rounded)")
    ax.set_title(f"Influence levels, true and predicted ({where})")
    ax.set_xlabel("influence level")
    ax.set_ylabel("samples")
    ax.set_xticks(levels)
    ax.legend()
    return fig


def text_colour(fraction: float) -> str:
    """Colour of a count printed on a cell of the 'Blues' map at this row fraction: white on dark cells."""
    return "white" if fraction > 0.5 else "black"


def _confusion_figure(confusion: list[list[int]], where: str):
    """Heat map of the row-normalised confusion matrix with the counts printed on it."""
    import matplotlib.pyplot as plt

    levels = np.arange(NUM_LEVELS)
    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(cm)):
        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6, color=text_colour(norm[i, j]))
    ax.set_title(f"Confusion matrix ({where})")
    ax.set_xlabel("predicted level (rounded)")
    ax.set_ylabel("true level")
    ax.set_xticks(levels)
    ax.set_yticks(levels)
    fig.colorbar(im, ax=ax, label="fraction of the true level's samples")
    return fig


def _period_figure(by_period: dict[str, dict], where: str):
    """MAE and MSE per observation period (ctime - post_time)."""
    import matplotlib.pyplot as plt

    names = list(by_period)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(x - 0.2, [by_period[n]["mae"] for n in names], width=0.4, label="MAE")
    ax.bar(x + 0.2, [by_period[n]["mse"] for n in names], width=0.4, label="MSE")
    ax.set_title(f"Error by observation period ({where})")
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_xlabel("observation period (current time - post time)")
    ax.set_ylabel("error (levels; squared levels for MSE)")
    ax.legend()
    return fig


def _plots(report: dict, y_true: np.ndarray, y_pred: np.ndarray, prefix: Path) -> list[str]:
    """The three PNG plots of a report, named <prefix>_{levels,confusion,period}.png."""
    import matplotlib

    matplotlib.use("Agg")
    where = f"{report.get('stage', '?')}, {report.get('split', '?')}"
    return [_save(_levels_figure(y_true, y_pred, where), prefix, "levels"),
            _save(_confusion_figure(report["confusion"], where), prefix, "confusion"),
            _save(_period_figure(report["by_period"], where), prefix, "period")]


def write_eval_report(run_dir: str | Path, stage: str | None, split: str, store: GraphStore | str | Path) -> dict:
    """Evaluate RUN_DIR/<stage>/predictions_<split>.parquet; write eval_<split>.json/.md/.png."""
    run_dir = Path(run_dir)
    stage = stage or default_stage(run_dir, split)
    store = store if isinstance(store, GraphStore) else GraphStore.open(store)
    out = run_dir / stage
    pred = read_predictions(out / f"predictions_{split}.parquet")
    nodes = pred["node"].astype(np.int64)
    if nodes.size == 0:  # metrics of no samples are NaN: say so rather than write a report of NaNs
        raise UserError(f"{out}/predictions_{split}.parquet holds no predictions (the {split} split of "
                        f"{store.location} is empty?), so there is nothing to evaluate")
    n_video = store.num_nodes("video")
    if nodes.size and (nodes.min() < 0 or nodes.max() >= n_video):
        bad = int(np.argmax((nodes < 0) | (nodes >= n_video)))
        raise UserError(f"{out}/predictions_{split}.parquet: row {bad}: field 'node' = {nodes[bad]} is not a video of {store.path}")
    platform = store.column("platform")[nodes]
    age = (store.column("ctime")[nodes] - store.column("post_time")[nodes]) / DAY
    report = evaluate_predictions(pred["y_true"], pred["y_pred"], platform, age)
    report.update({"stage": stage, "split": split, "store": str(store.path)})
    prefix = out / f"eval_{split}"
    report["plots"] = _plots(report, pred["y_true"], pred["y_pred"], prefix)
    md = _markdown(report, f"{run_dir.name} / {stage} / {split}")
    for suffix, text in ((".json", json.dumps(report, indent=2)), (".md", md)):
        write_text(prefix.with_suffix(suffix), text)
    return report
