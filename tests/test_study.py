"""Seed-level aggregation on fabricated runs whose metrics can be checked by hand."""
import numpy as np
import pandas as pd
import pytest

from scipy.stats import wilcoxon

from cxrlib import compare, study
from cxrlib.contract import THRESHOLD_POLICIES, model_of
from helpers import missed_run

# Test rows: 5 NORMAL and 5 PNEUMONIA. A run with m "missed" positives scores them below every negative, so at
# the fixed threshold 0.5 its accuracy is (10 - m) / 10 and its ROC-AUC is 1 - m / 5.
MISSED = {"resnet50": {1: 0, 2: 1, 3: 2}, "densenet121": {1: 1, 2: 1, 3: 3}}
T_975_2DF = 4.302652729911275  # the 97.5th percentile of Student's t with 2 degrees of freedom (tables)


@pytest.fixture
def runs():
    """Each model and seed: validation positives 0.01 lower for each seed (helpers.missed_run)."""
    return [missed_run(arch, seed, missed, val_shift=0.01 * seed, name=f"{arch}-seed{seed}")
            for arch, by_seed in MISSED.items() for seed, missed in by_seed.items()]


def test_seed_metrics_chooses_every_policy_on_each_runs_validation_rows(runs):
    per_seed = study.seed_metrics(runs, primary="fixed")
    assert len(per_seed) == 2 * 3 * len(THRESHOLD_POLICIES)
    assert list(per_seed["policy"].unique()) == ["fixed", "youden_midpoint", "youden", "sensitivity"]
    assert (per_seed["is_primary"] == (per_seed["policy"] == "fixed")).all()
    fixed = per_seed[per_seed["policy"] == "fixed"].set_index(["model", "seed"])
    for model, by_seed in MISSED.items():
        for seed, m in by_seed.items():
            assert fixed.loc[(model, seed), "accuracy"] == pytest.approx((10 - m) / 10)
            assert fixed.loc[(model, seed), "roc_auc"] == pytest.approx(1 - m / 5)
            assert fixed.loc[(model, seed), "sensitivity"] == pytest.approx((5 - m) / 5)
            assert fixed.loc[(model, seed), "specificity"] == 1
    # DenseNet-121, seed 2, by hand. Validation negatives: 0.05 + 0.55k/7 (k = 0..7); positives: 0.38 + 0.58k/7.
    # Youden's J = TPR - FPR at the cut-offs 0.38, 0.4629, 0.5457 and 0.6286 (the 8th to the 5th highest positive):
    # 8/8 - 3/8 = 7/8 - 2/8 = 6/8 - 1/8 = 5/8 - 0/8 = 0.625, every other cut-off less; ties take the highest,
    # 0.38 + 3 * 0.58 / 7. On test (negatives <= 0.45; positives 0.01, 0.9, 0.8, 0.7, 0.6) it finds 3 of the 5
    # positives (0.6 falls below it) and every negative: accuracy 8/10, where the fixed 0.5 gives 9/10.
    youden = per_seed.set_index(["model", "seed", "policy"]).loc[("densenet121", 2, "youden")]
    assert youden["threshold"] == pytest.approx(0.38 + 3 * 0.58 / 7)
    assert (youden["accuracy"], youden["sensitivity"], youden["specificity"]) == pytest.approx((0.8, 0.6, 1.0))


def test_seed_metrics_passes_policy_parameters(runs):
    per_seed = study.seed_metrics(runs, "fixed", ("fixed", "sensitivity"), fixed_threshold=0.35,
                                  target_sensitivity=0.5)
    assert (per_seed.loc[per_seed["policy"] == "fixed", "threshold"] == 0.35).all()
    # ResNet-50, seed 1: validation positives 0.39 + 0.58k/7 (k = 0..7); sensitivity 0.5 needs 4 of the 8, so the
    # highest such cut-off is the 4th highest positive, 0.39 + 4 * 0.58 / 7 (the default 0.95 would need 8 of 8: 0.39).
    sensitivity = per_seed.set_index(["model", "seed", "policy"]).loc[("resnet50", 1, "sensitivity")]
    assert sensitivity["threshold"] == pytest.approx(0.39 + 4 * 0.58 / 7)


def test_summary_gives_hand_checkable_means_sds_and_ranges(runs):
    summary = study.summarise_seeds(study.seed_metrics(runs, "fixed")).set_index(["model", "policy", "metric"])
    resnet_accuracy = summary.loc[("resnet50", "fixed", "accuracy")]  # 1.0, 0.9, 0.8
    assert resnet_accuracy["n_seeds"] == 3
    assert resnet_accuracy["mean"] == pytest.approx(0.9) and resnet_accuracy["sd"] == pytest.approx(0.1)
    assert (resnet_accuracy["min"], resnet_accuracy["max"]) == pytest.approx((0.8, 1.0))
    densenet_auc = summary.loc[("densenet121", "fixed", "roc_auc")]  # 0.8, 0.8, 0.4
    assert densenet_auc["mean"] == pytest.approx(2 / 3)
    assert densenet_auc["sd"] == pytest.approx(np.sqrt(((2 * (0.8 - 2 / 3) ** 2) + (0.4 - 2 / 3) ** 2) / 2))
    assert summary.loc[("resnet50", "fixed", "threshold"), "sd"] == 0
    assert summary.loc[("resnet50", "fixed", "threshold"), "is_primary"]


def test_paired_seed_differences_and_their_t_interval_match_a_hand_computation(runs):
    per_seed = study.seed_metrics(runs, "fixed")
    differences = study.seed_differences(per_seed, reference="densenet121", policy="fixed")
    accuracy = differences[differences["metric"] == "accuracy"]
    assert list(accuracy["seed"]) == [1, 2, 3] and (accuracy["model"] == "resnet50").all()
    np.testing.assert_allclose(accuracy["difference"], [0.1, 0.0, 0.1])
    summary = study.summarise_differences(differences).set_index("metric")
    row = summary.loc["accuracy"]
    mean, sd = 0.2 / 3, np.sqrt(((0.1 - 0.2 / 3) ** 2 * 2 + (0.2 / 3) ** 2) / 2)
    half_width = T_975_2DF * sd / np.sqrt(3)
    assert row["mean_difference"] == pytest.approx(mean) and row["sd_difference"] == pytest.approx(sd)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((mean - half_width, mean + half_width))
    # Sign test: 2 seeds favour resnet50, 1 tie (dropped) -> p = 2 * 0.5**2 = 0.5, also the smallest attainable.
    assert (row["n_model_better"], row["n_reference_better"]) == (2, 0)
    assert row["sign_test_p"] == pytest.approx(0.5) and row["min_attainable_p"] == pytest.approx(0.5)
    # Wilcoxon: the tie is dropped too; 2 positive differences -> p = 2 * 0.5**2 = 0.5.
    assert row["wilcoxon_p"] == pytest.approx(0.5) and row["wilcoxon_min_attainable_p"] == pytest.approx(0.5)
    auc = summary.loc["roc_auc"]  # differences 0.2, 0.0, 0.2 in AUC
    assert auc["mean_difference"] == pytest.approx(0.4 / 3)


def test_seed_ensembles_average_each_seeds_models_and_choose_their_own_threshold(runs):
    with_ensembles = study.add_seed_ensembles(runs)
    ensembles = with_ensembles[len(runs):]
    assert [study.seed_of(run) for run in ensembles] == [1, 2, 3]
    assert all(model_of(run.arch, run.name) == "ensemble" for run in ensembles)
    first = ensembles[0]
    np.testing.assert_allclose(first.test["prob"], (runs[0].test["prob"] + runs[3].test["prob"]) / 2)
    per_seed = study.seed_metrics(with_ensembles, "youden").set_index(["model", "seed", "policy"])
    row = per_seed.loc[("ensemble", 1, "youden")]
    # Both seed-1 models have the same validation rows, so the ensemble has them too: negatives 0.05 + 0.55k/7,
    # positives 0.39 + 0.58k/7 (k = 0..7). J = 5/8 at the 8th to the 5th highest positive (3, 2, 1, 0 negatives
    # above), less elsewhere; ties take the highest cut-off.
    assert row["threshold"] == pytest.approx(0.39 + 3 * 0.58 / 7)
    # At 0.5 the seed-2 ensemble misses the one positive both models score 0.01: accuracy 0.9.
    assert per_seed.loc[("ensemble", 2, "fixed"), "accuracy"] == pytest.approx(0.9)


def test_seed_study_collects_every_table_with_the_ensemble_compared_to_the_reference(runs):
    tables = study.seed_study(runs, primary="fixed", reference="densenet121")
    assert set(tables) == {"per_seed", "summary", "differences", "difference_summary"}
    assert set(tables["difference_summary"]["model"]) == {"resnet50", "ensemble"}
    assert (tables["difference_summary"]["policy"] == "fixed").all()


def test_one_seed_leaves_sds_and_intervals_undefined(runs):
    per_seed = study.seed_metrics(runs[:1] + runs[3:4], "fixed")
    summary = study.summarise_seeds(per_seed)
    assert summary["sd"].isna().all() and (summary["n_seeds"] == 1).all()
    differences = study.summarise_differences(study.seed_differences(per_seed, "densenet121", "fixed"))
    assert differences[["sd_difference", "ci_low", "ci_high"]].isna().all().all()
    assert differences.set_index("metric").loc["accuracy", "min_attainable_p"] == 1.0
    assert differences[["wilcoxon_p", "wilcoxon_min_attainable_p"]].isna().all().all()


def difference_rows(values) -> pd.DataFrame:
    """seed_differences-style rows of one comparison with the given per-seed differences."""
    return pd.DataFrame({"model": "densenet121", "reference": "resnet50", "policy": "fixed", "metric": "roc_auc",
                         "seed": range(1, len(values) + 1), "difference": values})


@pytest.mark.parametrize("values, expected_p, expected_floor, sign_p", [
    # All 5 positive: only the all-positive and all-negative sign patterns are as extreme -> 2 / 2**5.
    ([0.1, 0.2, 0.3, 0.4, 0.5], 2 / 32, 2 / 32, 2 / 32),
    # Ranks 1..5, the negative has rank 2: sign patterns with a negative rank sum <= 2 are {}, {1}, {2} -> 2 * 3 / 32.
    ([0.1, -0.2, 0.3, 0.4, 0.5], 6 / 32, 2 / 32, 0.375),
    # 1e-13 is a tie (dropped); 0.8 - 0.7 and 0.3 - 0.2 differ only by float noise, so they share mid-rank 1.5
    # (0.3, 0.3 share 3.5): negative rank sum 1.5, patterns {}, {1.5}, {1.5'} -> 6 / 32 from the exact permutation.
    ([0.8 - 0.7, -(0.3 - 0.2), 0.3, 0.3, 0.5, 1e-13], 6 / 32, 2 / 32, 0.375),
])
def test_wilcoxon_signed_rank_matches_a_hand_computation(values, expected_p, expected_floor, sign_p):
    row = study.summarise_differences(difference_rows(values)).iloc[0]
    assert row["wilcoxon_p"] == pytest.approx(expected_p)
    assert row["wilcoxon_min_attainable_p"] == pytest.approx(expected_floor)
    assert row["sign_test_p"] == pytest.approx(sign_p)  # the sign test stays beside it
    cleaned = [value for value in np.round(values, 12) if value != 0]
    assert row["wilcoxon_p"] == pytest.approx(wilcoxon(cleaned).pvalue)


def test_wilcoxon_is_undefined_without_a_nonzero_difference():
    row = study.summarise_differences(difference_rows([0.0, 1e-13, -1e-13])).iloc[0]
    assert np.isnan(row["wilcoxon_p"]) and np.isnan(row["wilcoxon_min_attainable_p"])
    assert row["sign_test_p"] == 1.0


@pytest.mark.parametrize("bad_call, message", [
    (lambda runs: study.seed_metrics(runs + runs[:1], "fixed"), r"seed 1 has more than one run of \['resnet50'\]"),
    (lambda runs: study.seed_metrics(runs, "f1"), "primary policy 'f1' is not among the policies"),
    (lambda runs: study.seed_metrics(runs, "fixed", delta=1.5), "delta=1.5"),
    (lambda runs: study.seed_differences(study.seed_metrics(runs, "fixed"), "vgg16", "fixed"), "vgg16"),
    (lambda runs: study.seed_metrics([compare.Run("x", "resnet50", {}, runs[0].predictions, 0.5)], "fixed"),
     "run 'x' records no seed"),
])
def test_bad_input_is_rejected_with_a_clear_message(runs, bad_call, message):
    with pytest.raises(ValueError, match=message):
        bad_call(runs)


def per_seed_frame(model_values: dict[str, list[float]], primary: bool = True) -> pd.DataFrame:
    """seed_metrics-shaped rows: one per model and seed, the same value for ROC-AUC and accuracy."""
    return pd.DataFrame([{"model": model, "seed": seed, "policy": "fixed", "is_primary": primary,
                          "roc_auc": value, "accuracy": value}
                         for model, values in model_values.items() for seed, value in enumerate(values, 1)])


def test_between_studies_gives_each_studys_spread_and_a_welch_interval_of_the_difference():
    tuned = [0.970, 0.972, 0.968, 0.974]  # mean 0.971, variance 6.667e-6
    shared = [0.960, 0.966, 0.955]        # mean 0.9603, variance 3.033e-5
    this = pd.concat([per_seed_frame({"resnet50": tuned, "ensemble": tuned}),
                      per_seed_frame({"resnet50": [0.5] * 4}, primary=False)])  # another policy: ignored
    earlier = per_seed_frame({"resnet50": shared, "densenet121": shared})
    table = study.between_studies(this, earlier, metrics=("roc_auc",)).set_index("model")
    assert list(table.index) == ["resnet50"]  # only models in both studies
    row = table.loc["resnet50"]
    assert (row["n"], row["earlier_n"]) == (4, 3)
    assert row["mean"] == pytest.approx(0.971) and row["earlier_mean"] == pytest.approx(0.960333, abs=1e-6)
    # Welch by hand: standard error sqrt(s1²/n1 + s2²/n2), Welch-Satterthwaite degrees of freedom
    a, b = np.var(tuned, ddof=1) / 4, np.var(shared, ddof=1) / 3
    df = (a + b) ** 2 / (a ** 2 / 3 + b ** 2 / 2)
    half_width = float(study.t.ppf(0.975, df)) * np.sqrt(a + b)
    assert row["difference"] == pytest.approx(0.971 - 0.960333, abs=1e-6)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((row["difference"] - half_width,
                                                            row["difference"] + half_width))
    assert df == pytest.approx(2.665, abs=0.001) and row["ci_low"] < 0 < row["ci_high"]  # 3 and 4 replicates: wide


def test_between_studies_with_one_replicate_has_no_interval():
    table = study.between_studies(per_seed_frame({"resnet50": [0.97]}), per_seed_frame({"resnet50": [0.96, 0.95]}))
    assert table["difference"].tolist() == pytest.approx([0.015, 0.015])
    assert table[["sd", "ci_low", "ci_high"]].isna().all().all()
