"""The raw score and the Platt-calibrated probability judged on test: per run, per bin and across replicates."""
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from cxrlib import compare, evaluate
from cxrlib.calibration import calibrated_probability, fit_platt
from reader_fakes import DENSENET, RESNET, VAL_PROBS, fake_run, study_runs

CALIBRATION = {"method": "platt", "slope": 2.0, "intercept": 1.0, "prevalence": 0.5, "images": 10, "fitted_on": "val"}


def test_a_recorded_calibration_is_used_as_recorded():
    calibration, source = compare.run_calibration(fake_run("resnet50", 1, RESNET, CALIBRATION))
    assert calibration == CALIBRATION and source == "recorded in run.json"


def test_a_run_without_one_gets_the_fit_cxrlib_ood_would_record():
    calibration, source = compare.run_calibration(fake_run("resnet50", 1, RESNET))
    expected = fit_platt(np.repeat([0, 1], 5), np.array(VAL_PROBS))
    assert calibration == expected and source == "refitted on the recorded validation rows"


def test_a_calibration_without_numbers_is_refused_naming_the_file_and_the_fix():
    run = fake_run("resnet50", 1, RESNET, {"method": "platt", "slope": None, "intercept": 1.0, "prevalence": 0.5})
    run.run_dir = Path("reports/x/runs/resnet50/seed-1")
    with pytest.raises(ValueError, match=r"reports/x/runs/resnet50/seed-1/run\.json holds calibration .*"
                                         r"python -m cxrlib\.ood fit RUN_DIR"):
        compare.run_calibration(run)


def test_the_calibrated_probability_is_what_cxrlib_predict_computes():
    outputs = compare.scored_test(fake_run("resnet50", 1, RESNET, CALIBRATION))
    assert outputs["score"].tolist() == RESNET
    assert np.allclose(outputs["probability"], calibrated_probability(np.array(RESNET), CALIBRATION))


def test_reliability_bins_are_the_points_of_sklearns_calibration_curve():
    rng = np.random.default_rng(0)
    targets, probs = rng.integers(0, 2, 200), rng.uniform(0, 1, 200) ** 2
    bins = compare.reliability_bins(targets, probs)
    observed, predicted = calibration_curve(targets, probs, n_bins=10, strategy="uniform")
    assert np.allclose(bins["observed"], observed) and np.allclose(bins["predicted"], predicted)
    assert bins["images"].sum() == 200


def test_reliability_bins_refuse_outputs_outside_0_1():
    with pytest.raises(ValueError, match="reliability_bins"):
        compare.reliability_bins([0, 1], [0.2, 1.3])


def test_brier_and_ece_per_run_and_output():
    run = fake_run("densenet121", 1, DENSENET, CALIBRATION)
    scores = compare.calibration_scores([run]).set_index("output")
    targets = run.test["target"]
    probability = calibrated_probability(np.array(DENSENET), CALIBRATION)
    assert scores.loc["score", "brier"] == pytest.approx(brier_score_loss(targets, DENSENET))
    assert scores.loc["probability", "brier"] == pytest.approx(brier_score_loss(targets, probability))
    assert scores.loc["probability", "ece"] == pytest.approx(evaluate.expected_calibration_error(targets, probability))
    assert scores.loc["score", "prevalence"] == pytest.approx(8 / 12) and scores.loc["score", "images"] == 12
    assert (scores["calibration_prevalence"] == 0.5).all()


def test_across_replicates_the_band_spans_the_replicates():
    runs = study_runs()
    rows = compare.reliability_rows(runs)
    summary = compare.summarise_reliability(rows).set_index(["model", "output", "bin"])
    last = summary.loc[("densenet121", "score", 8)]  # outputs in (0.8, 0.9]: replicate 3 moved one image out
    per_replicate = rows[(rows["model"] == "densenet121") & (rows["output"] == "score") & (rows["bin"] == 8)]
    assert last["replicates"] == 3 and last["observed_min"] == per_replicate["observed"].min()
    assert last["observed_max"] == per_replicate["observed"].max() and last["images"] == per_replicate["images"].sum()
