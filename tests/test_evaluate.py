"""Metrics against scikit-learn, the operating-point policies, and the vectorised weighted metrics."""
import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import classification_report, roc_auc_score

from cxrlib import evaluate
from cxrlib.contract import THRESHOLD_POLICIES
from helpers import scored_sample


def test_youden_threshold_maximises_j_and_prefers_the_highest_tie():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.6, 0.35, 0.8, 0.9])
    # J = 2/3 both at 0.8 (sens 2/3, spec 1) and at 0.35 (sens 1, spec 2/3; 1 - 1/3 rounds above 2/3 in
    # floating point): the higher one wins.
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


def plateau_sample():
    """Validation scores whose Youden's J is flat from ~0.2 to ~0.8: 99 low negatives and one at 0.8,
    one low positive at 0.3 and 99 high positives; J = 0.99 at both 0.3 and 0.82."""
    y_true = np.r_[np.zeros(100, int), np.ones(100, int)]
    probs = np.r_[np.linspace(0.01, 0.19, 99), 0.8, 0.3, np.linspace(0.82, 0.99, 99)]
    return y_true, probs


def test_youden_midpoint_stays_put_when_one_positive_crosses_the_highest_negative_and_youden_jumps():
    y_true, probs = plateau_sample()
    moved = probs.copy()
    moved[101] = 0.5  # the lowest high positive (0.82) drops below the highest negative (0.8)
    before = {policy: evaluate.choose_threshold(y_true, probs, policy) for policy in ("youden", "youden_midpoint")}
    after = {policy: evaluate.choose_threshold(y_true, moved, policy) for policy in ("youden", "youden_midpoint")}
    assert (before["youden"], after["youden"]) == (0.82, 0.3)
    assert abs(after["youden_midpoint"] - before["youden_midpoint"]) < 0.02
    assert 0.3 < before["youden_midpoint"] < 0.8


def test_youden_midpoint_is_the_logit_midpoint_of_the_near_optimal_thresholds():
    y_true, probs = scored_sample(seed=6, decimals=3)
    def youden(t):
        pred = probs >= t
        return pred[y_true == 1].mean() + (~pred[y_true == 0]).mean() - 1
    j = np.array([youden(t) for t in np.unique(probs)])
    near = np.unique(probs)[j >= j.max() - 0.05 - 1e-12]
    logit = lambda p: np.log(p / (1 - p))
    expected = 1 / (1 + np.exp(-(logit(near.min()) + logit(near.max())) / 2))
    assert near.min() < near.max()
    assert evaluate.choose_threshold(y_true, probs, "youden_midpoint", delta=0.05) == pytest.approx(expected)


def test_youden_midpoint_with_zero_delta_splits_tied_maxima_and_clips_a_probability_of_one():
    logit = lambda p: np.log(p / (1 - p))
    sigmoid = lambda x: 1 / (1 + np.exp(-x))
    y_true = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.6, 0.35, 0.8, 0.9])  # J = 2/3 at 0.35 and at 0.8
    assert evaluate.choose_threshold(y_true, probs, "youden_midpoint", delta=0) == pytest.approx(
        sigmoid((logit(0.35) + logit(0.8)) / 2))
    # J = 1/2 at 1.0 and at 0.4; 1.0 is clipped to 1 - 1e-6 before the logit.
    clipped = evaluate.choose_threshold([0, 0, 1, 1], [0.0, 0.6, 0.4, 1.0], "youden_midpoint", delta=0)
    assert clipped == pytest.approx(sigmoid((logit(1 - evaluate.LOGIT_CLIP) + logit(0.4)) / 2))


def test_fixed_policy_ignores_the_data_but_still_checks_it():
    for seed in (0, 1):
        y_true, probs = scored_sample(separation=1.0 + seed, seed=seed)
        assert evaluate.choose_threshold(y_true, probs, "fixed") == 0.5
        assert evaluate.choose_threshold(y_true, probs, "fixed", fixed_threshold=0.3) == 0.3
    with pytest.raises(ValueError, match="both classes"):
        evaluate.choose_threshold([1, 1], [0.2, 0.9], "fixed")


def test_policy_thresholds_with_sample_weights_equal_repeated_images():
    y_true, probs = scored_sample(seed=7, decimals=3)
    counts = np.random.default_rng(0).integers(0, 3, len(y_true))
    weighted = evaluate.policy_thresholds(y_true, probs, sample_weight=counts, target_sensitivity=0.9)
    repeated = evaluate.policy_thresholds(np.repeat(y_true, counts), np.repeat(probs, counts), target_sensitivity=0.9)
    assert list(weighted) == list(THRESHOLD_POLICIES)
    assert weighted == pytest.approx(repeated)


TWO = ([0, 1], [0.2, 0.9])  # the smallest valid validation set


@pytest.mark.parametrize("bad_call, message", [
    (lambda: evaluate.choose_threshold([0, 1, 1], [0.2, 0.9, 1.3]), "within"),
    (lambda: evaluate.choose_threshold([1, 1, 1], [0.2, 0.9, 0.3]), "both classes"),
    (lambda: evaluate.choose_threshold([0, 1], [0.2, 0.9], policy="f1"), "unknown threshold policy 'f1'"),
    (lambda: evaluate.choose_threshold([0, 1, 1], [0.2, 0.9]), "equal length"),
    (lambda: evaluate.choose_threshold(*TWO, "youden_midpoint", delta=1.0), r"delta=1.0 is outside \[0, 1\)"),
    (lambda: evaluate.choose_threshold(*TWO, "youden", delta=-0.1), r"delta=-0.1 .* e.g. 0.02"),
    (lambda: evaluate.choose_threshold(*TWO, "fixed", fixed_threshold=1.0), r"fixed_threshold=1.0"),
    (lambda: evaluate.choose_threshold(*TWO, "fixed", fixed_threshold=0), r"fixed_threshold=0 is outside"),
    (lambda: evaluate.choose_threshold(*TWO, "sensitivity", target_sensitivity=0), "target_sensitivity=0"),
    (lambda: evaluate.choose_threshold(*TWO, target_sensitivity=1.5), r"outside \(0, 1\]"),
    (lambda: evaluate.choose_threshold(*TWO, "youden_midpoint", delta=float("nan")), "delta=nan"),
    (lambda: evaluate.policy_thresholds(*TWO, ("youden", "best")), "unknown threshold policy 'best'"),
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
    weights = np.random.default_rng(7).integers(0, 3, size=(3, len(y_true)))  # multiplicities, as in a resample
    vectorised = evaluate.weighted_metrics(y_true, probs, 0.5, weights)
    for row, counts in enumerate(weights.astype(int)):
        index = np.repeat(np.arange(len(y_true)), counts)
        expected = evaluate.compute_metrics(y_true[index], probs[index], 0.5)
        for name in evaluate.METRICS:
            assert vectorised[name][row] == pytest.approx(expected[name]), name


def test_metrics_vs_threshold_matches_point_metrics():
    y_true, probs = scored_sample()
    curve = evaluate.metrics_vs_threshold(y_true, probs, thresholds=[0.3, 0.7])
    assert isinstance(curve, pd.DataFrame) and list(curve["threshold"]) == [0.3, 0.7]
    assert curve["specificity"].iloc[1] == pytest.approx(evaluate.compute_metrics(y_true, probs, 0.7)["specificity"])
