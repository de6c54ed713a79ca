"""Run loading, paired tests (McNemar, DeLong, bootstrap), ensemble and the results table on fake run dirs."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from cxrlib import compare
from cxrlib.data.index import relpath_from_path
from helpers import fake_predictions, write_run


@pytest.fixture
def two_runs(tmp_path):
    """A stronger ResNet-50 and a weaker DenseNet-121 run on the same images (rows of one shuffled)."""
    resnet = compare.load_run(write_run(tmp_path / "resnet50", "resnet50", separation=3.0, seed=1))
    shuffled = fake_predictions(separation=1.0, seed=2).sample(frac=1.0, random_state=0)
    densenet = compare.load_run(write_run(tmp_path / "densenet121", "densenet121", predictions=shuffled))
    return resnet, densenet


def test_load_run_reads_the_contract(tmp_path):
    run = compare.load_run(write_run(tmp_path / "run"))
    assert (run.name, run.arch) == ("quick-resnet50", "resnet50")
    assert len(run.val) == 40 and len(run.test) == 80
    assert run.threshold == run.info["threshold"]["value"]
    assert list(run.history["epoch"]) == [1, 2, 3]
    assert (run.test["pred"] == (run.test["prob"] >= run.threshold)).all()


def test_load_run_names_images_relative_to_the_data_root_and_joins_a_given_root(tmp_path):
    run_dir = write_run(tmp_path / "run")  # the fake record holds another machine's absolute paths (/data/...)
    relative = compare.load_run(run_dir)
    assert relative.test["path"].iloc[0] == "test/PNEUMONIA/img000.jpeg"
    joined = compare.load_run(run_dir, tmp_path / "chest_xray")
    assert joined.test["path"].iloc[0] == str(tmp_path / "chest_xray" / "test" / "PNEUMONIA" / "img000.jpeg")
    assert joined.test["prob"].equals(relative.test["prob"])


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "predictions.csv").unlink(), "predictions.csv is missing"),
    (lambda d: (d / "run.json").write_text("{not json"), "run.json is not valid JSON"),
    (lambda d: (d / "run.json").write_text(json.dumps({"name": "x"})), "needs 'threshold'"),
    (lambda d: pd.read_csv(d / "predictions.csv").drop(columns="prob").to_csv(d / "predictions.csv"), "lacks columns"),
    (lambda d: pd.read_csv(d / "predictions.csv").assign(prob=2.0).to_csv(d / "predictions.csv"), "within|in \\[0, 1\\]"),
    (lambda d: (d / "history.csv").unlink(), "history.csv is missing"),
])
def test_load_run_names_the_bad_file(tmp_path, damage, message):
    run_dir = write_run(tmp_path / "run")
    damage(run_dir)
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        compare.load_run(run_dir)


def test_runs_on_different_images_are_refused(tmp_path, two_runs):
    other = fake_predictions(n_test=79, seed=3)
    stranger = compare.load_run(write_run(tmp_path / "other", predictions=other))
    with pytest.raises(ValueError, match="different test images"):
        compare.compare_pair(two_runs[0], stranger, n_boot=100)


def test_aligned_subset_reorders_by_path(two_runs):
    test_a, test_b = compare.aligned_subset(two_runs)
    assert list(test_a["path"]) == list(test_b["path"])
    assert not (two_runs[1].test["path"].to_numpy() == test_b["path"].to_numpy()).all()


def test_mcnemar_matches_an_exact_binomial_test():
    rng = np.random.default_rng(0)
    correct_a, correct_b = rng.random(100) < 0.85, rng.random(100) < 0.7
    result = compare.mcnemar_test(correct_a, correct_b)
    only_a, only_b = np.sum(correct_a & ~correct_b), np.sum(~correct_a & correct_b)
    assert result["p_value"] == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert result["table"].sum() == 100


def brute_force_delong(y_true, probs_a, probs_b):
    """DeLong et al. (1988) with explicit structural components psi(x, y) over all pairs."""
    y_true = np.asarray(y_true).astype(bool)
    def components(probs):
        pos, neg = probs[y_true], probs[~y_true]
        psi = np.array([[1.0 if x > y else 0.5 if x == y else 0.0 for y in neg] for x in pos])
        return psi.mean(axis=1), psi.mean(axis=0), psi.mean()
    v10_a, v01_a, auc_a = components(probs_a)
    v10_b, v01_b, auc_b = components(probs_b)
    s10, s01 = np.cov(v10_a, v10_b), np.cov(v01_a, v01_b)
    cov = s10 / y_true.sum() + s01 / (~y_true).sum()
    return auc_a, auc_b, cov


def test_delong_matches_brute_force_structural_components():
    y_true = np.r_[np.zeros(15, int), np.ones(20, int)]
    rng = np.random.default_rng(4)
    probs_a = np.round(rng.random(35) * 0.7 + 0.3 * y_true, 1)  # coarse rounding -> many ties
    probs_b = np.round(rng.random(35) * 0.8 + 0.2 * y_true, 1)
    aucs, covariance = compare.delong_covariance(y_true, np.vstack([probs_a, probs_b]))
    auc_a, auc_b, expected = brute_force_delong(y_true, probs_a, probs_b)
    np.testing.assert_allclose(aucs, [auc_a, auc_b])
    np.testing.assert_allclose(aucs, [roc_auc_score(y_true, probs_a), roc_auc_score(y_true, probs_b)])
    np.testing.assert_allclose(covariance, expected)
    result = compare.delong_test(y_true, probs_a, probs_b)
    assert result["std_error"] == pytest.approx(np.sqrt(expected[0, 0] + expected[1, 1] - 2 * expected[0, 1]))


def test_delong_of_identical_models_is_not_significant():
    y_true = np.r_[np.zeros(10, int), np.ones(10, int)]
    probs = np.linspace(0.05, 0.95, 20)[np.random.default_rng(0).permutation(20)]
    result = compare.delong_test(y_true, probs, probs)
    assert result["difference"] == 0 and result["p_value"] == 1.0


def test_compare_pair_detects_the_stronger_model_and_labels_image_and_patient_level_rows(two_runs):
    table = compare.compare_pair(*two_runs, n_boot=500)
    assert list(table["metric"]) == ["accuracy", "accuracy", "roc_auc", "roc_auc"]
    assert list(table["level"]) == ["image", "patient", "image", "patient"]
    rows = table.set_index("test")
    delong = rows.loc["image-level DeLong (ROC-AUC)"]
    assert delong["difference"] > 0 and delong["p_value"] < 0.05
    bootstrap_auc = rows.loc["paired patient bootstrap (ROC-AUC)"]
    assert bootstrap_auc["difference"] == pytest.approx(delong["difference"])
    assert bootstrap_auc["ci_low"] > 0
    assert "40 patients" in bootstrap_auc["note"]
    assert "discordant images" in rows.loc["image-level McNemar exact (accuracy at chosen thresholds)", "note"]


def test_compare_pair_resamples_test_patients(tmp_path):
    mixed = one_patient_per_class(tmp_path / "a")
    better = one_patient_per_class(tmp_path / "b", "densenet121",
                                   {"NORMAL": [0.1, 0.1, 0.1, 0.9], "PNEUMONIA": [0.9, 0.9, 0.9, 0.9]})
    table = compare.compare_pair(mixed, better, n_boot=300, seed=4).set_index("metric")
    patient_rows = table[table["level"] == "patient"]
    # one child per class: every paired resample is the whole test set, so each interval is its difference
    assert patient_rows.loc["accuracy", "difference"] == pytest.approx(5 / 8 - 7 / 8)  # a − b
    np.testing.assert_allclose(patient_rows["ci_low"], patient_rows["difference"])
    np.testing.assert_allclose(patient_rows["ci_high"], patient_rows["difference"])


def test_disagreements_lists_exactly_the_differing_predictions(two_runs):
    resnet, densenet = two_runs
    frame = compare.disagreements(resnet, densenet)
    merged = resnet.test.merge(densenet.test, on="path", suffixes=("_a", "_b"))
    assert len(frame) == (merged["pred_a"] != merged["pred_b"]).sum() > 0
    assert (frame[f"pred_{resnet.name}"] != frame[f"pred_{densenet.name}"]).all()


def youden_by_counting(targets, probs, delta: float = 0.0) -> tuple[float, float]:
    """(lowest, highest) observed score whose Youden's J = TPR - FPR (positive: score >= cut-off) is within
    ``delta`` of its maximum, counted image by image at every distinct score: not through an ROC curve, as
    cxrlib.evaluate finds it."""
    targets, probs = np.asarray(targets), np.asarray(probs, dtype=float)
    cuts = np.unique(probs)
    j = np.array([(probs[targets == 1] >= cut).mean() - (probs[targets == 0] >= cut).mean() for cut in cuts])
    near = cuts[j >= j.max() - delta - 1e-12]
    return float(near.min()), float(near.max())


def combined(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """Two members' scores combined as written out: 'mean' (a + b) / 2; 'logit' the sigmoid of the mean logit, which
    is the geometric mean of the odds: sqrt(ab) / (sqrt(ab) + sqrt((1 - a)(1 - b)))."""
    return (a + b) / 2 if method == "mean" else np.sqrt(a * b) / (np.sqrt(a * b) + np.sqrt((1 - a) * (1 - b)))


def members_on(runs, subset: str) -> pd.DataFrame:
    """The two runs' rows of ``subset`` joined on the image path: target, prob_a, prob_b."""
    a, b = (getattr(run, subset)[["path", "target", "prob"]] for run in runs)
    return a.merge(b.drop(columns="target"), on="path", suffixes=("_a", "_b"), validate="one_to_one")


@pytest.mark.parametrize("method", ["mean", "logit"])
def test_ensemble_averages_probabilities_and_chooses_its_threshold_on_val(two_runs, method):
    ensemble = compare.make_ensemble(two_runs, method=method)
    assert ensemble.threshold_info["target_sensitivity"] == 0.95
    assert ensemble.arch == "ensemble" and ensemble.history is None
    for subset in ("val", "test"):
        rows = members_on(two_runs, subset)
        expected = pd.Series(combined(rows["prob_a"].to_numpy(), rows["prob_b"].to_numpy(), method), rows["path"])
        scores = getattr(ensemble, subset).set_index("path")["prob"]
        assert len(scores) == len(expected) == {"val": 40, "test": 80}[subset]
        np.testing.assert_allclose(scores.loc[expected.index], expected, rtol=1e-6)
    # The members' policy is youden: the highest cut-off of greatest J on the ensemble's own validation scores.
    rows = members_on(two_runs, "val")
    val_scores = combined(rows["prob_a"].to_numpy(), rows["prob_b"].to_numpy(), method)
    assert ensemble.threshold == pytest.approx(youden_by_counting(rows["target"], val_scores)[1])
    assert ensemble.threshold not in (two_runs[0].threshold, two_runs[1].threshold)  # not a member's own


def test_ensemble_uses_the_members_policy_parameters(two_runs):
    member = two_runs[0].threshold_info | {"policy": "youden_midpoint", "youden_delta": 0.2}  # as cxrlib.train records it
    members = [dataclasses.replace(run, threshold_info=member) for run in two_runs]
    ensemble = compare.make_ensemble(members)
    assert ensemble.threshold_info["delta"] == 0.2
    rows = members_on(members, "val")
    low, high = youden_by_counting(rows["target"], combined(rows["prob_a"], rows["prob_b"], "mean"), delta=0.2)
    midpoint = 1 / (1 + np.sqrt((1 - low) * (1 - high) / (low * high)))  # sigmoid of the mean of the two logits
    assert low < high and ensemble.threshold == pytest.approx(midpoint)
    fixed = compare.make_ensemble(members, policy="fixed")
    assert fixed.threshold == 0.5 and fixed.threshold_info["policy"] == "fixed"


def test_a_runs_threshold_policy_reads_the_trainers_and_the_ensembles_records(two_runs):
    run = two_runs[0]
    trained = {"policy": "youden_midpoint", "value": 0.3, "target_sensitivity": 0.95, "youden_delta": 0.2,
               "chosen_on": "val"}  # as cxrlib.train records it
    assert dataclasses.replace(run, threshold_info=trained).threshold_policy() == (
        "youden_midpoint", {"target_sensitivity": 0.95, "delta": 0.2})
    fixed = dataclasses.replace(run, threshold=0.5, threshold_info={**trained, "policy": "fixed", "value": 0.5})
    assert fixed.threshold_policy()[1]["fixed_threshold"] == 0.5
    rechosen = compare.with_policy(run, "fixed", fixed_threshold=0.3)  # as the ensemble and with_policy record it
    assert rechosen.threshold_policy() == ("fixed", {"fixed_threshold": 0.3})
    assert dataclasses.replace(run, threshold_info={}).threshold_policy() == (None, {})


def test_an_ensemble_of_fixed_threshold_members_keeps_their_threshold(two_runs):
    members = [compare.with_policy(run, "fixed", fixed_threshold=0.3) for run in two_runs]
    ensemble = compare.make_ensemble(members)
    assert ensemble.threshold == 0.3 and ensemble.threshold_info["policy"] == "fixed"


def test_results_table_has_one_row_per_model_with_cis_and_costs(two_runs):
    runs = [*two_runs, compare.make_ensemble(two_runs)]
    table = compare.results_table(runs, n_boot=300)
    assert list(table["model"]) == ["resnet50", "densenet121", "ensemble"]
    for metric in ("accuracy", "roc_auc", "sensitivity", "specificity", "macro_f1"):
        assert (table[f"{metric}_ci_low"] <= table[metric]).all() and (table[metric] <= table[f"{metric}_ci_high"]).all()
    resnet = two_runs[0].test
    assert table.loc[0, "accuracy"] == pytest.approx(np.mean(resnet["pred"] == resnet["target"]))
    assert table.loc[0, "accuracy_at_0.5"] == pytest.approx(np.mean((resnet["prob"] >= 0.5) == resnet["target"]))
    assert table.loc[0, "params_total"] == 1000 and table.loc[0, "train_time_s"] == 12.5
    assert (table["n_test"] == 80).all() and (table["n_test_patients"] == 40).all()
    assert np.isnan(table.loc[0, "images_per_sec"])  # the trainer writes null when it has no figure
    assert np.isnan(table.loc[2, "latency_ms"]) and np.isnan(table.loc[2, "params_total"])


MIXED_PROBS = {"NORMAL": [0.1, 0.2, 0.8, 0.9], "PNEUMONIA": [0.9, 0.8, 0.7, 0.3]}


def one_patient_per_class(run_dir, arch="resnet50", probs=MIXED_PROBS) -> compare.Run:
    """A run whose test set is one NORMAL and one PNEUMONIA child with four images each (``probs``, by default
    mixed right and wrong at 0.5): resampling children within class always draws the same eight images,
    resampling images would not."""
    rows = [{"path": f"/data/{subset}/{label}/{subset}{i}.jpeg", "subset": subset, "label": label,
             "target": int(label == "PNEUMONIA"), "patient_id": f"{subset}-{label}", "prob": prob}
            for subset in ("val", "test") for label, label_probs in probs.items() for i, prob in enumerate(label_probs)]
    return compare.load_run(write_run(run_dir, arch, predictions=pd.DataFrame(rows), policy="fixed"))


def test_results_table_and_evaluate_run_resample_test_patients(tmp_path):
    run = one_patient_per_class(tmp_path / "run")
    row = compare.results_table([run], n_boot=200, seed=3).iloc[0]
    # by hand at 0.5: NORMAL 2 of 4 right, PNEUMONIA 3 of 4 right; AUC: 10 of 16 positive-negative pairs ordered (ties half)
    expected = {"accuracy": 5 / 8, "specificity": 2 / 4, "sensitivity": 3 / 4, "roc_auc": 10 / 16}
    for metric, value in expected.items():
        assert row[metric] == pytest.approx(value)
        assert row[f"{metric}_ci_low"] == pytest.approx(value) and row[f"{metric}_ci_high"] == pytest.approx(value)
    assert row["n_test_patients"] == 2
    frame = compare.evaluate_run(run, n_boot=200, seed=3).set_index(["threshold", "metric"])
    np.testing.assert_allclose(frame.loc[(run.threshold, "accuracy"), ["estimate", "ci_low", "ci_high"]], 5 / 8)


def test_patient_intervals_widen_when_children_differ(two_runs):
    row = compare.results_table(two_runs[:1], n_boot=200, seed=3).iloc[0]
    for metric in ("accuracy", "roc_auc", "sensitivity", "specificity"):
        assert row[f"{metric}_ci_low"] < row[metric] < row[f"{metric}_ci_high"], metric


def test_evaluate_run_and_classification_report(two_runs):
    frame = compare.evaluate_run(two_runs[0], n_boot=100)
    assert set(frame["threshold"]) == {0.5, two_runs[0].threshold}
    report = compare.classification_report(two_runs[0])
    assert report.loc["accuracy", "f1-score"] == pytest.approx(two_runs[0].test["correct"].mean())


# ---------------------------------------------------------------- byte-identical duplicates

def image_index(predictions: pd.DataFrame, duplicate_groups: list[list[int]]) -> pd.DataFrame:
    """A scan_dataset-style index (relpath, sha256) of the predicted images; each group of test rows shares a hash."""
    relpaths = predictions["path"].str.replace("/data/", "", regex=False)
    sha256 = pd.Series([f"hash-{i}" for i in range(len(predictions))], index=predictions.index)
    test_index = predictions.index[predictions["subset"] == "test"]
    for group in duplicate_groups:
        sha256[test_index[group]] = f"shared-{group[0]}"
    return pd.DataFrame({"path": "/elsewhere/" + relpaths, "relpath": relpaths, "sha256": sha256})


def test_merge_duplicates_keeps_one_row_per_identical_test_image(two_runs):
    resnet, densenet = two_runs
    images = image_index(resnet.predictions, [[0, 5], [10, 15, 20]])  # same labels: targets repeat every 5 rows
    merged, dropped = compare.merge_duplicates(two_runs, images)
    assert len(dropped) == 3 and len(merged) == 2
    assert all(len(run.test) == 77 and len(run.val) == 40 for run in merged)
    test = resnet.test
    assert set(dropped["path"]) == set(test["path"].iloc[[5, 15, 20]])
    assert set(dropped["kept_path"]) == set(test["path"].iloc[[0, 10]])
    kept = merged[0].test.set_index("path")
    assert kept.loc[test["path"].iloc[10], "prob"] == pytest.approx(test["prob"].iloc[[10, 15, 20]].mean())
    assert kept.loc[test["path"].iloc[10], "patient_id"] == test["patient_id"].iloc[10]
    assert merged[1].test.set_index("path").loc[test["path"].iloc[0], "prob"] == pytest.approx(
        densenet.test.set_index("path").loc[test["path"].iloc[[0, 5]], "prob"].mean())
    assert merged[0].threshold == resnet.threshold and merged[0].history is resnet.history
    compare.results_table(merged, n_boot=50)  # the merged runs still line up


def test_merge_duplicates_leaves_val_rows_unless_asked(two_runs):
    images = image_index(two_runs[0].predictions, [])
    val_index = images.index[two_runs[0].predictions["subset"] == "val"]
    images.loc[val_index[[0, 5]], "sha256"] = "same-val-image"
    merged, dropped = compare.merge_duplicates(two_runs, images)
    assert dropped.empty and len(merged[0].val) == 40
    merged, dropped = compare.merge_duplicates(two_runs, images, subsets=("val", "test"))
    assert list(dropped["subset"]) == ["val"] and len(merged[0].val) == 39


def test_merge_duplicates_matches_windows_and_foreign_absolute_paths():
    assert relpath_from_path("C:\\Users\\me\\chest_xray\\test\\NORMAL\\a.jpeg") == "test/NORMAL/a.jpeg"
    assert relpath_from_path("/home/other/data/chest_xray/test/PNEUMONIA/b.jpeg") == "test/PNEUMONIA/b.jpeg"


def test_merge_duplicates_names_an_image_missing_from_the_index(two_runs):
    images = image_index(two_runs[0].predictions, []).iloc[:-1]
    missing = two_runs[0].test["path"].iloc[-1]
    with pytest.raises(ValueError, match=f"1 predicted images are not in the data index, e.g. {missing}"):
        compare.merge_duplicates(two_runs, images)


def test_merge_duplicates_refuses_identical_images_with_different_labels(two_runs):
    images = image_index(two_runs[0].predictions, [[0, 3]])  # row 0 is PNEUMONIA, row 3 NORMAL
    with pytest.raises(ValueError, match="byte-identical images carry different labels"):
        compare.merge_duplicates(two_runs, images)


def write_replicates(runs_dir, configs: dict) -> None:
    """Run directories <arch>/seed-<k> (k = 1, 2) whose run.json 'config' holds configs[arch] (a list: one per seed)."""
    for arch, per_seed in configs.items():
        for seed, config in enumerate(per_seed, start=1):
            run_dir = write_run(runs_dir / arch / f"seed-{seed}", arch, seed=seed)
            info = json.loads((run_dir / "run.json").read_text())
            (run_dir / "run.json").write_text(json.dumps({**info, "config": {"arch": arch, "seed": seed, **config}}))


def test_load_runs_accepts_a_recipe_per_architecture_but_one_protocol_within_and_across(tmp_path):
    tuned = {"resnet50": [{"learning_rate": 1e-3, "batch_size": 32}] * 2,
             "densenet121": [{"learning_rate": 5e-4, "batch_size": 32}] * 2}
    write_replicates(tmp_path / "tuned", tuned)
    assert len(compare.load_runs(tmp_path / "tuned")) == 4
    within = {**tuned, "resnet50": [{"learning_rate": 1e-3, "batch_size": 32}, {"learning_rate": 2e-3, "batch_size": 32}]}
    write_replicates(tmp_path / "within", within)
    with pytest.raises(ValueError, match="differ in training settings.*learning_rate"):
        compare.load_runs(tmp_path / "within")
    outside = {"resnet50": [{"learning_rate": 1e-3, "precision": "float32"}] * 2,
               "densenet121": [{"learning_rate": 1e-3, "precision": "mixed_bfloat16"}] * 2}
    write_replicates(tmp_path / "outside", outside)
    with pytest.raises(ValueError, match="differ in training settings.*precision"):
        compare.load_runs(tmp_path / "outside")


def test_load_runs_refuses_a_replicate_whose_models_saw_other_validation_images(tmp_path):
    write_replicates(tmp_path, {"resnet50": [{}], "densenet121": [{}]})  # no split_fingerprint, as older records
    assert len(compare.load_runs(tmp_path)) == 2
    predictions = tmp_path / "densenet121" / "seed-1" / "predictions.csv"
    frame = pd.read_csv(predictions)
    first_val = frame.index[frame["subset"] == "val"][0]
    frame.loc[first_val, "path"] = frame.loc[first_val, "path"].replace(".jpeg", "-other.jpeg")
    frame.to_csv(predictions, index=False)
    with pytest.raises(ValueError, match=r"the runs of seed 1 under .* used different validation splits "
                                         r"\(validation images differ\)"):
        compare.load_runs(tmp_path)


def test_a_records_cpu_is_named_with_its_kind():
    named = compare.runs.recorded_cpu
    assert named({"cpu": "AMD EPYC", "cpu_kind": "AMD EPYC (avx2)", "cpu_bf16": []}) == "AMD EPYC (avx2)"
    assert named({"cpu": "AMD EPYC", "cpu_bf16": ["avx512_bf16"]}) == "AMD EPYC (avx512_bf16)"  # older records
    assert named({"cpu": "AMD EPYC", "cpu_bf16": []}) == "AMD EPYC"
    assert named({}) == "unknown CPU"
