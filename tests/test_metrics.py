"""The published SPIR metrics and the evaluation breakdowns."""
from __future__ import annotations

import numpy as np
import pytest

from netgpt.evaluate import evaluate_predictions, observation_period
from netgpt.metrics import confusion_matrix, regression_metrics, round_levels


def test_acc_rounds_and_clips_predictions():
    y = np.array([0, 9, 3, 4, 5])
    pred = np.array([-0.7, 11.2, 3.49, 4.5, 5.51])  # clip 0, clip 9, 3, 4 (half to even), 6
    assert round_levels(pred).tolist() == [0, 9, 3, 4, 6]
    m = regression_metrics(y, pred)
    assert m["acc"] == pytest.approx(4 / 5)
    assert m["mse"] == pytest.approx(np.mean((pred - y) ** 2))  # on the continuous, unclipped prediction
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - y)))
    assert m["n"] == 5


def test_metrics_reject_mismatched_lengths_and_handle_empty():
    with pytest.raises(ValueError):
        regression_metrics(np.zeros(3), np.zeros(2))
    assert regression_metrics(np.zeros(0), np.zeros(0))["n"] == 0


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix(np.array([2, 2, 7]), np.array([2.2, 3.9, 6.6]))
    assert cm.sum() == 3 and cm[2, 2] == 1 and cm[2, 4] == 1 and cm[7, 7] == 1


def test_observation_periods_and_breakdowns():
    age = np.array([0.5, 3.0, 3.01, 7.0, 7.5, 20.0])
    assert observation_period(age).tolist() == [0, 0, 1, 1, 2, 2]
    y = np.array([1, 2, 3, 4, 5, 6])
    pred = y + np.array([0, 0, 1, 1, 0.2, 0.2])
    rep = evaluate_predictions(y, pred, np.array([0, 0, 1, 1, 4, 4]), age)
    assert rep["by_period"]["<=3 days"]["mae"] == 0 and rep["by_period"]["4-7 days"]["mae"] == 1
    assert set(rep["by_platform"]) == {"Douyin", "Kuaishou", "Bilibili"}
    assert rep["overall"]["n"] == 6
