"""The evaluation plots: a title and labelled axes on each, counts readable on dark confusion cells."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from netgpt.evaluate import PERIODS, _plots, evaluate_predictions, observation_period, text_colour  # noqa: E402


@pytest.fixture
def report() -> dict:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 300).astype(float)
    pred = np.where(rng.random(300) < 0.7, y, rng.uniform(0, 9, 300))
    platform = rng.integers(0, 5, 300)
    age = rng.uniform(0, 12, 300)
    r = evaluate_predictions(y, pred, platform, age)
    r.update(stage="pretrain", split="test", y_true=y, y_pred=pred)
    return r


def test_every_plot_has_a_title_and_axis_labels(report, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, path, **kw: figures.append(fig) or open(path, "wb").close())
    names = _plots(report, report["y_true"], report["y_pred"], tmp_path / "eval_test")
    assert names == ["eval_test_levels.png", "eval_test_confusion.png", "eval_test_period.png"]
    assert len(figures) == 3
    for name, fig in zip(names, figures):
        ax = fig.axes[0]
        assert "pretrain, test" in ax.get_title(), name
        assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: unlabelled axis"
    period_ax = figures[2].axes[0]
    assert "error" in period_ax.get_ylabel()
    assert [t.get_text() for t in period_ax.get_xticklabels()] == [p[0] for p in PERIODS]


def test_confusion_counts_readable_on_dark_cells(report, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, path, **kw: figures.append(fig) or open(path, "wb").close())
    _plots(report, report["y_true"], report["y_pred"], tmp_path / "eval_test")
    ax = figures[1].axes[0]
    cm = np.asarray(report["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    texts = ax.texts
    assert len(texts) == int((cm > 0).sum())
    colours = {to_rgb(t.get_color()) for t in texts}
    assert colours == {to_rgb("white"), to_rgb("black")}  # the diagonal is dark, off-diagonal cells light
    for t in texts:
        j, i = (int(round(c)) for c in t.get_position())
        assert int(t.get_text()) == int(cm[i, j])
        assert to_rgb(t.get_color()) == to_rgb("white" if norm[i, j] > 0.5 else "black")


def test_text_colour_switches_at_half():
    assert text_colour(0.9) == "white" and text_colour(0.5) == "black" and text_colour(0.0) == "black"


def test_observation_periods_follow_the_table():
    age = np.array([0.0, 3.0, 3.5, 7.0, 7.01, 40.0])
    assert observation_period(age).tolist() == [0, 0, 1, 1, 2, 2]
    assert [p[0] for p in PERIODS] == ["<=3 days", "4-7 days", ">7 days"]
