"""Metrics against scikit-learn, the validation-only threshold, and the vectorised stratified bootstrap."""
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import classification_report, roc_auc_score

from cxrlib import evaluate


def scored_sample(n_neg=60, n_pos=100, separation=1.0, seed=0, decimals=2):
    """Labels and rounded (so that ties occur) probabilities from two overlapping normal distributions."""
    rng = np.random.default_rng(seed)
    y_true = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    scores = rng.normal(separation * y_true, 1.0)
    return y_true, np.round(1 / (1 + np.exp(-scores)), decimals)


def test_youden_threshold_maximises_j_and_prefers_the_highest_tie():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.4, 0.6, 0.35, 0.8, 0.9])
    # J = 2/3 both at 0.8 (sens 2/3, spec 1) and at 0.35 (sens 1, spec 2/3): the higher one wins.
    assert evaluate.choose_threshold(y_true, probs) == 0.8


def test_youden_threshold_matches_brute_force_search():
    y_true, probs = scored_sample(seed=3)
    def youden(t):
        pred = probs >= t
        return pred[y_true == 1].mean() + (~pred[y_true == 0]).mean() - 1
    best = max(np.unique(probs), key=lambda t: (youden(t), t))
    assert evaluate.choose_threshold(y_true, probs) == pytest.approx(best)


def test_sensitivity_policy_takes_the_highest_threshold_reaching_the_target():
    y_true, probs = scored_sample(seed=4)
    threshold = evaluate.choose_threshold(y_true, probs, policy="sensitivity", target_sensitivity=0.9)
    sensitivity_at = lambda t: (probs[y_true == 1] >= t).mean()
    assert sensitivity_at(threshold) >= 0.9
    higher = np.unique(probs)[np.unique(probs) > threshold]
    assert sensitivity_at(higher.min()) < 0.9


def test_threshold_interval_brackets_the_choice_and_narrows_with_more_validation_images():
    def width_and_point(n):
        y_true, probs = scored_sample(n_neg=n, n_pos=n, separation=2.0, seed=5, decimals=6)
        low, high = evaluate.threshold_interval(y_true, probs, n_boot=300, seed=1)
        return high - low, low <= evaluate.choose_threshold(y_true, probs) <= high
    (small_width, small_inside), (large_width, large_inside) = width_and_point(40), width_and_point(2000)
    assert small_inside and large_inside
    assert large_width < small_width / 2


def test_threshold_interval_of_separated_classes_stays_at_the_lowest_positives():
    # Every resample is perfectly separated, so Youden always picks its lowest positive score.
    y_true = np.r_[np.zeros(50, int), np.ones(50, int)]
    probs = np.r_[np.linspace(0.0, 0.1, 50), np.linspace(0.6, 1.0, 50)]
    low, high = evaluate.threshold_interval(y_true, probs, n_boot=200)
    assert 0.6 <= low <= high <= 0.7


@pytest.mark.parametrize("bad_call, message", [
    (lambda: evaluate.choose_threshold([0, 1, 1], [0.2, 0.9, 1.3]), "within"),
    (lambda: evaluate.choose_threshold([1, 1, 1], [0.2, 0.9, 0.3]), "both classes"),
    (lambda: evaluate.choose_threshold([0, 1], [0.2, 0.9], policy="f1"), "unknown threshold policy"),
    (lambda: evaluate.choose_threshold([0, 1, 1], [0.2, 0.9]), "equal length"),
    (lambda: evaluate.threshold_interval([0, 0, 1], [0.2, 0.9, float("nan")]), "threshold_interval"),
])
def test_bad_input_is_rejected_with_a_clear_message(bad_call, message):
    with pytest.raises(ValueError, match=message):
        bad_call()


def test_classification_report_frame_matches_sklearn():
    y_true, probs = scored_sample()
    frame = evaluate.classification_report_frame(y_true, probs, threshold=0.6)
    expected = classification_report(y_true, probs >= 0.6, target_names=["NORMAL", "PNEUMONIA"], output_dict=True)
    assert list(frame.index) == ["NORMAL", "PNEUMONIA", "accuracy", "macro avg", "weighted avg"]
    for row in ("NORMAL", "PNEUMONIA", "macro avg", "weighted avg"):
        for column in ("precision", "recall", "f1-score", "support"):
            assert frame.loc[row, column] == pytest.approx(expected[row][column])
    assert frame.loc["accuracy", "f1-score"] == pytest.approx(expected["accuracy"])


def test_ece_matches_a_loop_over_sklearn_calibration_bins():
    y_true, probs = scored_sample(seed=5, decimals=1)  # many probabilities sit exactly on bin edges
    prob_true, prob_pred = calibration_curve(y_true, probs, n_bins=10, strategy="uniform")
    counts = np.bincount(evaluate.calibration_bins(probs), minlength=10)
    counts = counts[counts > 0]
    expected = np.sum(counts / len(probs) * np.abs(prob_true - prob_pred))
    assert evaluate.expected_calibration_error(y_true, probs) == pytest.approx(expected)


def test_weighted_metrics_with_unit_weights_equal_sklearn_point_estimates():
    y_true, probs = scored_sample(seed=1)
    point = evaluate.compute_metrics(y_true, probs, 0.55)
    vectorised = evaluate.weighted_metrics(y_true, probs, 0.55, np.ones((1, len(y_true))))
    assert point["roc_auc"] == pytest.approx(roc_auc_score(y_true, probs))
    for name in evaluate.METRICS:
        assert vectorised[name][0] == pytest.approx(point[name]), name


def test_weighted_metrics_equal_sklearn_on_explicit_resamples():
    y_true, probs = scored_sample(seed=2)
    weights = next(evaluate.bootstrap_weights(y_true, n_boot=3, seed=7))
    vectorised = evaluate.weighted_metrics(y_true, probs, 0.5, weights)
    for row, counts in enumerate(weights.astype(int)):
        index = np.repeat(np.arange(len(y_true)), counts)
        expected = evaluate.compute_metrics(y_true[index], probs[index], 0.5)
        for name in evaluate.METRICS:
            assert vectorised[name][row] == pytest.approx(expected[name]), name


def test_bootstrap_is_stratified_and_seeded():
    y_true, _ = scored_sample()
    first = np.vstack(list(evaluate.bootstrap_weights(y_true, n_boot=300, seed=1)))
    again = np.vstack(list(evaluate.bootstrap_weights(y_true, n_boot=300, seed=1)))
    assert first.shape == (300, len(y_true))
    assert (first[:, y_true == 1].sum(axis=1) == (y_true == 1).sum()).all()
    assert (first[:, y_true == 0].sum(axis=1) == (y_true == 0).sum()).all()
    np.testing.assert_array_equal(first, again)


def test_bootstrap_cis_cover_the_estimate_and_shrink_with_more_data():
    small = evaluate.bootstrap_metrics(*scored_sample(60, 100, seed=8), 0.5, n_boot=1000)
    large = evaluate.bootstrap_metrics(*scored_sample(600, 1000, seed=8), 0.5, n_boot=1000)
    for frame in (small, large):
        assert (frame["ci_low"] <= frame["estimate"]).all() and (frame["estimate"] <= frame["ci_high"]).all()
    width = lambda frame: frame["ci_high"] - frame["ci_low"]
    assert (width(large) < width(small)).all()


def test_bootstrap_of_a_kermany_sized_test_set_takes_seconds():
    y_true, probs = scored_sample(234, 390, seed=9)  # the Kermany test split: 234 NORMAL, 390 PNEUMONIA
    start = time.perf_counter()
    frame = evaluate.bootstrap_metrics(y_true, probs, 0.5, n_boot=2000)
    assert time.perf_counter() - start < 10.0  # ~1 s on one shared core; a per-resample sklearn loop takes minutes
    assert list(frame.index) == list(evaluate.METRICS)


def test_evaluate_at_thresholds_labels_both_operating_points():
    y_true, probs = scored_sample()
    frame = evaluate.evaluate_at_thresholds(y_true, probs, 0.62, policy="youden", n_boot=200)
    assert set(frame["operating_point"]) == {"default 0.5", "youden (0.620)"}
    at = frame.set_index(["threshold", "metric"])["estimate"]
    assert at[(0.62, "sensitivity")] == pytest.approx(evaluate.compute_metrics(y_true, probs, 0.62)["sensitivity"])
    assert at[(0.5, "roc_auc")] == at[(0.62, "roc_auc")]


def test_paired_bootstrap_difference_is_zero_for_identical_models_and_positive_for_a_better_one():
    y_true, probs = scored_sample(seed=10)
    same = evaluate.paired_bootstrap(y_true, probs, probs, 0.5, 0.5, n_boot=200)
    assert (same[["difference", "ci_low", "ci_high"]].to_numpy() == 0).all()
    _, better = scored_sample(separation=3.0, seed=10)
    diff = evaluate.paired_bootstrap(y_true, better, probs, 0.5, 0.5, n_boot=500)
    assert (diff["ci_low"] > 0).all()


def test_metrics_vs_threshold_matches_point_metrics():
    y_true, probs = scored_sample()
    curve = evaluate.metrics_vs_threshold(y_true, probs, thresholds=[0.3, 0.7])
    assert isinstance(curve, pd.DataFrame) and list(curve["threshold"]) == [0.3, 0.7]
    assert curve["specificity"].iloc[1] == pytest.approx(evaluate.compute_metrics(y_true, probs, 0.7)["specificity"])
