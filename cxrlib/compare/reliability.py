"""How far the test outputs can be read as probabilities, per run and across replicates: the raw score and the
Platt-calibrated ``probability`` that ``cxrlib.predict`` hands users, both judged on the test images.

The raw score is trained with balanced class weights and label smoothing, so it is not P(PNEUMONIA) at any real
prevalence; the calibrated probability was fitted on the run's validation images and holds at their PNEUMONIA
share (``calibration.prevalence``), not necessarily at the test folder's.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
from sklearn.metrics import brier_score_loss

from cxrlib import evaluate
from cxrlib.calibration import calibrated_probability, fit_platt
from cxrlib.contract import RUN_RECORD_FILE, model_of

from .runs import Run

OUTPUTS = ("score", "probability")  # the model's raw output; cxrlib.predict's Platt-calibrated probability
RECORDED, REFITTED = "recorded in run.json", "refitted on the recorded validation rows"


def run_calibration(run: Run) -> tuple[dict, str]:
    """The run's Platt calibration and where it came from: run.json's ``calibration``, else fitted on the run's
    recorded validation rows exactly as ``python -m cxrlib.ood fit`` would record it (runs trained before it)."""
    recorded = run.info.get("calibration")
    if recorded is None:
        return fit_platt(run.val["target"].to_numpy(), run.val["prob"].to_numpy()), REFITTED
    if not (isinstance(recorded, dict) and all(isinstance(recorded.get(key), (int, float))
                                               for key in ("slope", "intercept", "prevalence"))):
        where = run.run_dir / RUN_RECORD_FILE if run.run_dir else f"run {run.name!r}"
        raise ValueError(f"{where} holds calibration {recorded!r} without numeric slope, intercept and prevalence; "
                         "fit it again with: python -m cxrlib.ood fit RUN_DIR")
    return recorded, RECORDED


def scored_test(run: Run) -> pd.DataFrame:
    """The run's test rows with its raw ``score`` and the calibrated ``probability`` ``cxrlib.predict`` would give."""
    calibration, _ = run_calibration(run)
    test = run.test
    return test.assign(score=test["prob"], probability=calibrated_probability(test["prob"], calibration))


def reliability_bins(targets, probs, n_bins: int = evaluate.ECE_BINS) -> pd.DataFrame:
    """Per equal-width bin holding images (the points of ``sklearn.calibration.calibration_curve``, uniform
    strategy): ``bin``, ``predicted`` (mean output), ``observed`` (PNEUMONIA share) and ``images``."""
    targets, probs = evaluate.check_binary_inputs(targets, probs, "reliability_bins")
    frame = pd.DataFrame({"bin": evaluate.calibration_bins(probs, n_bins), "target": targets, "prob": probs})
    binned = frame.groupby("bin").agg(predicted=("prob", "mean"), observed=("target", "mean"), images=("prob", "size"))
    return binned.reset_index()


def calibration_scores(runs: Sequence[Run]) -> pd.DataFrame:
    """Per run and output (``score``, ``probability``): test images, their PNEUMONIA share, the Brier score, the ECE
    (10 equal-width bins), the mean output, and the calibration's own prevalence and source."""
    rows = []
    for run in runs:
        outputs, (calibration, source) = scored_test(run), run_calibration(run)
        for output in OUTPUTS:
            rows.append({"model": model_of(run.arch, run.name), "seed": run.seed, "output": output,
                         "images": len(outputs), "prevalence": outputs["target"].mean(),
                         "brier": brier_score_loss(outputs["target"], outputs[output]),
                         "ece": evaluate.expected_calibration_error(outputs["target"], outputs[output]),
                         "mean_output": outputs[output].mean(), "calibration_prevalence": calibration["prevalence"],
                         "calibration_source": source})
    return pd.DataFrame(rows)


def reliability_rows(runs: Sequence[Run], n_bins: int = evaluate.ECE_BINS) -> pd.DataFrame:
    """``reliability_bins`` of every run's test score and calibrated probability. Columns: model, seed, output,
    bin, predicted, observed, images."""
    frames = []
    for run in runs:
        outputs = scored_test(run)
        for output in OUTPUTS:
            frames.append(reliability_bins(outputs["target"], outputs[output], n_bins)
                          .assign(model=model_of(run.arch, run.name), seed=run.seed, output=output))
    rows = pd.concat(frames, ignore_index=True)
    return rows[["model", "seed", "output", "bin", "predicted", "observed", "images"]]


def summarise_reliability(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model, output and bin across replicates: the mean predicted value, the observed share's mean, min and
    max (the band), the replicates with images in the bin and their images in total."""
    summary = rows.groupby(["model", "output", "bin"], sort=False).agg(
        predicted=("predicted", "mean"), observed=("observed", "mean"), observed_min=("observed", "min"),
        observed_max=("observed", "max"), replicates=("seed", "nunique"), images=("images", "sum"))
    return summary.reset_index()

