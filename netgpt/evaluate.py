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
from graphstore.schema import PLATFORM_NAMES_EN
from graphstore.store import GraphStore

from .metrics import NUM_LEVELS, confusion_matrix, regression_metrics, round_levels

STAGE_ORDER = ("finetune", "pretrain")  # the default stage is the latest one present
PERIODS = (("<=3 days", 0.0, 3.0), ("4-7 days", 3.0, 7.0), (">7 days", 7.0, float("inf")))
DAY = 86400.0


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
    idx = np.zeros(age_days.shape, dtype=np.int64)
    idx[age_days > 3.0] = 1
    idx[age_days > 7.0] = 2
    return idx


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


def _plots(report: dict, y_true: np.ndarray, y_pred: np.ndarray, prefix: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        path = prefix.with_name(f"{prefix.name}_{name}.png")
        tmp = path.with_name(path.stem + ".tmp.png")
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path.name)

    levels = np.arange(NUM_LEVELS)
    t = np.bincount(np.rint(y_true).astype(np.int64).clip(0, 9), minlength=NUM_LEVELS)
    p = np.bincount(round_levels(y_pred), minlength=NUM_LEVELS)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(levels - 0.2, t, width=0.4, label="true")
    ax.bar(levels + 0.2, p, width=0.4, label="predicted (rounded)")
    ax.set_xlabel("influence level"); ax.set_ylabel("samples"); ax.set_xticks(levels); ax.legend()
    save(fig, "levels")

    cm = np.asarray(report["confusion"], dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(NUM_LEVELS):
        for j in range(NUM_LEVELS):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6)
    ax.set_xlabel("predicted level"); ax.set_ylabel("true level"); ax.set_xticks(levels); ax.set_yticks(levels)
    fig.colorbar(im, ax=ax, label="row fraction")
    save(fig, "confusion")

    names = list(report["by_period"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [report["by_period"][n]["mae"] for n in names], width=0.4, label="MAE")
    ax.bar(x + 0.2, [report["by_period"][n]["mse"] for n in names], width=0.4, label="MSE")
    ax.set_xticks(x); ax.set_xticklabels(names); ax.set_xlabel("observation period"); ax.legend()
    save(fig, "period")
    return written


def write_eval_report(run_dir: str | Path, stage: str | None, split: str, store: GraphStore | str | Path) -> dict:
    """Evaluate RUN_DIR/<stage>/predictions_<split>.parquet; write eval_<split>.json/.md/.png."""
    run_dir = Path(run_dir)
    stage = stage or default_stage(run_dir, split)
    store = store if isinstance(store, GraphStore) else GraphStore.open(store)
    out = run_dir / stage
    pred = read_predictions(out / f"predictions_{split}.parquet")
    nodes = pred["node"].astype(np.int64)
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
