"""The stratified image and patient-cluster bootstrap: count matrices, CIs, paired differences, threshold stability."""
import numpy as np
import pandas as pd
import pytest

from cxrlib import bootstrap, evaluate
from cxrlib.contract import THRESHOLD_POLICIES
from helpers import scored_sample


def clustered_sample(n_patients=40, images_per_patient=5, seed=0):
    """Labels, probabilities and patient ids where a patient's images share most of their score (a patient effect)."""
    rng = np.random.default_rng(seed)
    patient_target = np.r_[np.zeros(n_patients, int), np.ones(n_patients, int)]
    patient_score = rng.normal(1.0 * patient_target, 1.0)
    patient = np.repeat(np.arange(2 * n_patients), images_per_patient)
    scores = patient_score[patient] + rng.normal(0, 0.1, len(patient))
    return patient_target[patient], 1 / (1 + np.exp(-scores)), np.array([f"child{i}" for i in patient])


def test_image_bootstrap_is_stratified_and_seeded():
    y_true, _ = scored_sample()
    first = np.vstack(list(bootstrap.bootstrap_weights(y_true, n_boot=300, seed=1)))
    again = np.vstack(list(bootstrap.bootstrap_weights(y_true, n_boot=300, seed=1)))
    assert first.shape == (300, len(y_true))
    assert (first[:, y_true == 1].sum(axis=1) == (y_true == 1).sum()).all()
    assert (first[:, y_true == 0].sum(axis=1) == (y_true == 0).sum()).all()
    np.testing.assert_array_equal(first, again)


def test_one_image_per_patient_is_the_image_bootstrap():
    y_true, _ = scored_sample()
    images = np.vstack(list(bootstrap.bootstrap_weights(y_true, n_boot=300, seed=2)))
    patients = np.vstack(list(bootstrap.bootstrap_weights(y_true, n_boot=300, seed=2,
                                                          groups=[f"p{i}" for i in range(len(y_true))])))
    np.testing.assert_array_equal(images, patients)


def test_a_patients_images_move_together_and_patients_are_resampled_within_class():
    y_true, _, groups = clustered_sample(n_patients=7, images_per_patient=3)
    order = np.random.default_rng(0).permutation(len(y_true))  # patients' images need not be adjacent
    y_true, groups = y_true[order], groups[order]
    weights = np.vstack(list(bootstrap.bootstrap_weights(y_true, n_boot=600, seed=3, groups=groups)))
    for patient in np.unique(groups):
        counts = weights[:, groups == patient]
        assert (counts == counts[:, :1]).all(), patient
    per_patient = pd.DataFrame(weights.T).groupby([groups, y_true]).first()
    assert (per_patient.groupby(level=1).sum() == 7).all().all()  # 7 patients drawn per class in every resample
    assert weights.std(axis=0).min() > 0  # every patient is sometimes drawn more or less than once


def test_a_patient_with_both_classes_is_stratified_on_its_majority_then_its_first_image():
    y_true = np.array([1, 0, 1, 0, 0, 1, 1])
    groups = np.array(["a", "a", "a", "b", "b", "c", "d"])  # a: 2 of 3 positive; b: negative; c, d: positive
    patient_of_image, patient_class = bootstrap.patient_strata(y_true, groups)
    np.testing.assert_array_equal(patient_of_image, [0, 0, 0, 1, 1, 2, 3])
    np.testing.assert_array_equal(patient_class, [1, 0, 1, 1])
    _, tied = bootstrap.patient_strata(np.array([0, 1, 1]), np.array(["e", "e", "f"]))
    np.testing.assert_array_equal(tied, [0, 1])  # e: one of each -> its first image's class


def test_patient_bootstrap_interval_is_wider_than_the_image_bootstrap_on_clustered_data():
    y_true, probs, groups = clustered_sample()
    width = lambda frame: frame.loc["roc_auc", "ci_high"] - frame.loc["roc_auc", "ci_low"]
    images = bootstrap.bootstrap_metrics(y_true, probs, 0.5, n_boot=1000)
    patients = bootstrap.bootstrap_metrics(y_true, probs, 0.5, n_boot=1000, groups=groups)
    assert width(patients) > 1.5 * width(images)
    assert patients["estimate"].equals(images["estimate"])


@pytest.mark.parametrize("groups, message", [
    (["p1", "p2"], "one patient id per image"),
    (["p1", None, "p3", "p4"], "1 images have no patient id"),
    (["p1", "p1", "p1", "p2"], "the other class has no patient"),  # both patients are mostly PNEUMONIA
])
def test_bad_patient_ids_are_rejected(groups, message):
    with pytest.raises(ValueError, match=message):
        next(bootstrap.bootstrap_weights(np.array([0, 1, 1, 1]), n_boot=5, groups=groups))


def test_bootstrap_rejects_zero_resamples():
    with pytest.raises(ValueError, match="n_boot must be >= 1, got 0"):
        next(bootstrap.bootstrap_weights([0, 1], n_boot=0))


def test_bootstrap_cis_cover_the_estimate_and_shrink_with_more_data():
    small = bootstrap.bootstrap_metrics(*scored_sample(60, 100, seed=8), 0.5, n_boot=1000)
    large = bootstrap.bootstrap_metrics(*scored_sample(600, 1000, seed=8), 0.5, n_boot=1000)
    assert list(small.index) == list(evaluate.METRICS)
    for frame in (small, large):
        assert (frame["ci_low"] <= frame["estimate"]).all() and (frame["estimate"] <= frame["ci_high"]).all()
    width = lambda frame: frame["ci_high"] - frame["ci_low"]
    assert (width(large) < width(small)).all()


def test_evaluate_at_thresholds_labels_both_operating_points():
    y_true, probs = scored_sample()
    frame = bootstrap.evaluate_at_thresholds(y_true, probs, 0.62, policy="youden", n_boot=200)
    assert set(frame["operating_point"]) == {"default 0.5", "youden (0.620)"}
    at = frame.set_index(["threshold", "metric"])["estimate"]
    assert at[(0.62, "sensitivity")] == pytest.approx(evaluate.compute_metrics(y_true, probs, 0.62)["sensitivity"])
    assert at[(0.5, "roc_auc")] == at[(0.62, "roc_auc")]


def test_paired_bootstrap_difference_is_zero_for_identical_models_and_positive_for_a_better_one():
    y_true, probs = scored_sample(seed=10)
    same = bootstrap.paired_bootstrap(y_true, probs, probs, 0.5, 0.5, n_boot=200)
    assert (same[["difference", "ci_low", "ci_high"]].to_numpy() == 0).all()
    _, better = scored_sample(separation=3.0, seed=10)
    diff = bootstrap.paired_bootstrap(y_true, better, probs, 0.5, 0.5, n_boot=500)
    assert (diff["ci_low"] > 0).all()


def test_paired_patient_bootstrap_is_wider_than_the_image_one_on_clustered_data():
    y_true, probs, groups = clustered_sample(seed=1)
    other = np.clip(probs + np.random.default_rng(2).normal(0, 0.05, len(probs)), 0, 1)
    width = lambda frame: frame.loc["roc_auc", "ci_high"] - frame.loc["roc_auc", "ci_low"]
    images = bootstrap.paired_bootstrap(y_true, probs, other, 0.5, 0.5, n_boot=500)
    patients = bootstrap.paired_bootstrap(y_true, probs, other, 0.5, 0.5, n_boot=500, groups=groups)
    assert width(patients) > width(images)


def test_paired_bootstrap_rejects_unknown_metrics():
    with pytest.raises(ValueError, match="unknown metrics \\['kappa'\\]"):
        bootstrap.paired_bootstrap([0, 1], [0.2, 0.8], [0.3, 0.7], 0.5, 0.5, metrics=("kappa",), n_boot=5)


def test_threshold_stability_brackets_each_choice_and_narrows_with_more_validation_images():
    def stability(n):
        y_true, probs = scored_sample(n_neg=n, n_pos=n, separation=2.0, seed=5, decimals=6)
        return bootstrap.threshold_stability(y_true, probs, n_boot=200, seed=1)
    small, large = stability(40), stability(2000)
    assert list(small.index) == list(THRESHOLD_POLICIES)
    assert list(small.columns) == ["threshold", "resampled_p2.5", "resampled_median", "resampled_p97.5",
                                   "resampled_sd", "n_boot"]
    for frame in (small, large):
        assert (frame["resampled_p2.5"] <= frame["threshold"]).all()
        assert (frame["threshold"] <= frame["resampled_p97.5"]).all()
    spread = lambda frame: frame["resampled_p97.5"] - frame["resampled_p2.5"]
    assert (spread(large) < spread(small) / 2)[["youden", "youden_midpoint", "sensitivity"]].all()
    assert (small.loc["fixed", ["threshold", "resampled_p2.5", "resampled_p97.5"]] == 0.5).all()
    assert small.loc["fixed", "resampled_sd"] == 0


def test_threshold_stability_of_separated_classes_stays_at_the_lowest_positives():
    # Every resample is perfectly separated, so Youden always picks its lowest positive score.
    y_true = np.r_[np.zeros(50, int), np.ones(50, int)]
    probs = np.r_[np.linspace(0.0, 0.1, 50), np.linspace(0.6, 1.0, 50)]
    frame = bootstrap.threshold_stability(y_true, probs, policies=("youden",), n_boot=200)
    assert 0.6 <= frame.loc["youden", "resampled_p2.5"] <= frame.loc["youden", "resampled_p97.5"] <= 0.7


def test_threshold_stability_passes_policy_parameters_and_patient_groups():
    y_true, probs, groups = clustered_sample()
    frame = bootstrap.threshold_stability(y_true, probs, ("fixed", "sensitivity"), n_boot=50, groups=groups,
                                          fixed_threshold=0.3, target_sensitivity=0.8)
    assert frame.loc["fixed", "threshold"] == 0.3
    assert frame.loc["sensitivity", "threshold"] == evaluate.choose_threshold(y_true, probs, "sensitivity",
                                                                              target_sensitivity=0.8)


@pytest.mark.parametrize("bad_call, message", [
    (lambda: bootstrap.threshold_stability([0, 0, 1], [0.2, 0.9, float("nan")]), "threshold_stability"),
    (lambda: bootstrap.threshold_stability([0, 1], [0.2, 0.9], ("youden", "f1")), "unknown threshold policy 'f1'"),
    (lambda: bootstrap.threshold_stability([0, 1], [0.2, 0.9], delta=2), "delta=2 is outside"),
    (lambda: bootstrap.bootstrap_metrics([0, 1], [0.2, 1.5], 0.5), "within \\[0, 1\\]"),
])
def test_bad_input_is_rejected_with_a_clear_message(bad_call, message):
    with pytest.raises(ValueError, match=message):
        bad_call()
