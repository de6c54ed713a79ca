"""Notebook 04's sections for a reader of a medical-imaging model, over every replicate of the study rendered:
sensitivity per pneumonia subtype, how far the outputs are probabilities, the images the models fail on, and
how the models learned. Each section's tables and sentences are computed here; subgroups.csv and calibration.csv
go next to the report (the index and docs/MODEL_CARD.md read them)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from IPython.display import Markdown, display

from cxrlib import compare, evaluate, plots
from cxrlib.contract import ARCHS, CALIBRATION_FILE, SUBGROUPS_FILE
from cxrlib.files import write_atomic
from cxrlib.report.discussion import signed
from cxrlib.report.format import is_missing, mean_sd_range, model_title, number, readable

if TYPE_CHECKING:  # the setup's module imports TensorFlow (Grad-CAM); these sections and the model card need none
    from cxrlib.report.comparison import ComparisonSetup

SUBGROUP_NAMES = {"NORMAL": "NORMAL", "bacterial": "bacterial pneumonia", "viral": "viral pneumonia"}
SUBGROUP_METRICS = {"NORMAL": "specificity", "bacterial": "sensitivity", "viral": "sensitivity"}
OUTPUT_NAMES = {"score": "raw score", "probability": "calibrated probability"}
GALLERY_IMAGES = 8


def trained_runs(setup: ComparisonSetup) -> list[compare.Run]:
    """The runs of the trained architectures (not the ensemble), every replicate."""
    return [run for run in setup.runs if run.arch in ARCHS]


def compared_pairs(setup: ComparisonSetup) -> list[tuple[str, str]]:
    """(model, reference) for every trained architecture but the reference: the plan's pair when there is one."""
    if setup.plan:
        return [(setup.plan.compared, setup.plan.reference)]
    return [(model, setup.reference) for model in setup.models if model in ARCHS and model != setup.reference]


def summary_text(mean, sd, low, high, ranges: bool = True) -> str:
    """``mean ± SD (min–max)`` across replicates, or ``mean ± SD`` without ``ranges`` (the index's compact tables)."""
    return mean_sd_range(mean, sd, low, high) if ranges or is_missing(sd) else f"{number(mean)} ± {number(sd)}"


def spread_text(values: pd.Series, ranges: bool = True) -> str:
    """Values across replicates as ``summary_text``."""
    return summary_text(values.mean(), values.std(), values.min(), values.max(), ranges)


def range_text(values: pd.Series, digits: int = 3) -> str:
    """``0.743`` when the values agree to ``digits`` decimals, else ``0.700–0.743``."""
    low, high = number(values.min(), digits), number(values.max(), digits)
    return low if low == high else f"{low}–{high}"


# ---------------------------------------------------------------- subgroups

def subgroup_table(rows: pd.DataFrame, group: str = compare.subgroups.ALL_GROUPS, ranges: bool = True) -> pd.DataFrame:
    """Per model and subgroup of one stored-size ``group``: what is measured, images and the share classified
    correctly across replicates (without the min–max when not ``ranges``), ``too few to read`` below the readable
    size."""
    summary = compare.summarise_subgroups(rows[rows["group"] == group])
    return pd.DataFrame({
        "model": summary["model"], "subgroup": summary["subgroup"].map(SUBGROUP_NAMES),
        "measured": summary["subgroup"].map(SUBGROUP_METRICS), "images": summary["images"],
        "mean ± SD (min–max)" if ranges else "mean ± SD": [
            summary_text(*values, ranges) for values in summary[["mean", "sd", "min", "max"]].to_numpy()],
        "readable": summary["readable"].map({True: "yes", False: f"no: fewer than {compare.MIN_READABLE_IMAGES}"})})


def subgroup_difference_table(rows: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Per compared pair and subgroup (every stored size together): the paired difference in the share classified
    correctly, its mean with the 95% t-interval across replicates and the replicates each side was higher in."""
    frames = [compare.subgroup_differences(rows[rows["group"] == compare.subgroups.ALL_GROUPS], model, reference)
              for model, reference in pairs]
    differences = pd.concat(frames, ignore_index=True)
    return pd.DataFrame({
        "comparison": [f"{model_title(m)} − {model_title(r)}" for m, r in zip(differences["model"],
                                                                              differences["reference"])],
        "subgroup": differences["subgroup"].map(SUBGROUP_NAMES),
        "measured": differences["subgroup"].map(SUBGROUP_METRICS), "images": differences["images"],
        "mean difference (95% t-interval)": [
            f"{signed(mean, 3)} ({signed(low, 3)} to {signed(high, 3)})"
            for mean, low, high in differences[["mean", "ci_low", "ci_high"]].to_numpy()],
        "replicates higher / lower": [f"{higher} / {lower}" for higher, lower in
                                      differences[["model_higher", "reference_higher"]].to_numpy()]})


def size_groups_of_subgroups(rows: pd.DataFrame) -> pd.DataFrame:
    """Images per subgroup (rows) and stored-size group (columns), from one model and replicate's rows."""
    first = rows[(rows["model"] == rows["model"].iloc[0]) & (rows["seed"] == rows["seed"].iloc[0])]
    within = first[first["group"] != compare.subgroups.ALL_GROUPS]
    return within.pivot(index="subgroup", columns="group", values="images").fillna(0).astype(int)


def subgroup_size_sentence(counts: pd.DataFrame) -> str:
    """How the subgroups spread over the stored-size groups, and what that means for reading them."""
    def where(subgroup: str) -> str:
        row = counts.loc[subgroup].sort_values(ascending=False)
        parts = [f"{count} {group}" for group, count in row.items() if count]
        return f"{SUBGROUP_NAMES[subgroup]} {row.sum()}: " + ", ".join(parts)
    listed = "; ".join(where(subgroup) for subgroup in counts.index)
    return (f"**Subtype and stored size go together in this copy of the data** (test images, duplicates counted once; "
            f"{listed}). A difference between bacterial and viral images is therefore also a difference between "
            "stored sizes, which the models may read (notebook 1): the subtypes cannot be compared with the size held "
            "fixed. The table below gives each subtype within each stored-size group; a cell of fewer than "
            f"{compare.MIN_READABLE_IMAGES} images is too small to read (one image moves its share by more than 0.03).")


def subgroups_section(setup: ComparisonSetup) -> pd.DataFrame:
    """Sensitivity per pneumonia subtype (and specificity among NORMAL images) for each model across replicates at
    the pre-registered threshold, the paired differences, and the subtypes within stored-size groups; writes
    subgroups.csv next to the report. Returns the per-replicate rows."""
    trained = trained_runs(setup)
    rows = compare.subgroup_rows(trained, setup.index.images)
    write_atomic(Path(setup.params["report_dir"]) / SUBGROUPS_FILE, lambda partial: rows.to_csv(partial, index=False))
    thresholds = sorted({run.threshold for run in trained})
    display(Markdown(f"Threshold: {', '.join(number(value) for value in thresholds)} (the pre-registered policy), "
                     f"{len({run.seed for run in trained})} replicates; byte-identical test images counted once."))
    display(readable(subgroup_table(rows)))
    display(plots.plot_subgroup_shares(rows[rows["group"] == compare.subgroups.ALL_GROUPS],
                                       {name: f"{SUBGROUP_NAMES[name]}\n({SUBGROUP_METRICS[name]})"
                                        for name in compare.SUBGROUPS}))
    display(Markdown("**Paired by replicate** (descriptive: no plan made this comparison, so no model is called "
                     "better here):"))
    display(readable(subgroup_difference_table(rows, compared_pairs(setup))))
    display(Markdown(subgroup_size_sentence(size_groups_of_subgroups(rows))))
    groups = [group for group in dict.fromkeys(rows["group"]) if group != compare.subgroups.ALL_GROUPS]
    display(readable(pd.concat([subgroup_table(rows, group).assign(group=group) for group in groups], ignore_index=True)
                     [["group", "model", "subgroup", "measured", "images", "mean ± SD (min–max)", "readable"]]))
    return rows


# ---------------------------------------------------------------- calibration

def calibration_axes(scores: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Each output's panel title and axis name, saying what it is (the raw score is not P(PNEUMONIA))."""
    at = range_text(scores["calibration_prevalence"], 2)
    return {"score": ("Raw score: ranks images, not P(PNEUMONIA)", "model score (class-weighted, label-smoothed)"),
            "probability": ("Calibrated probability (cxrlib.predict)", f"P(PNEUMONIA) at a PNEUMONIA share of {at}")}


def calibration_table(scores: pd.DataFrame, ranges: bool = True) -> pd.DataFrame:
    """Per model and output across replicates: Brier score, ECE and the mean output (to set beside the test
    folder's PNEUMONIA share) as mean ± SD (min–max; without it when not ``ranges``)."""
    rows = []
    for (model, output), part in scores.groupby(["model", "output"], sort=False):
        rows.append({"model": model, "output": OUTPUT_NAMES[output], "Brier score": spread_text(part["brier"], ranges),
                     "ECE": spread_text(part["ece"], ranges), "mean output": spread_text(part["mean_output"], ranges)})
    return pd.DataFrame(rows)


def calibration_sentence(scores: pd.DataFrame) -> str:
    """Where each run's calibration came from, at which prevalence it holds, and the test folder's."""
    sources = scores.drop_duplicates(["model", "seed"])["calibration_source"].value_counts()
    came = "; ".join(f"{source} for {count} runs" for source, count in sources.items())
    return (f"The calibration of each run ({came}) is a logistic regression on the logit of the score, fitted on "
            f"the run's validation images, whose PNEUMONIA share was {range_text(scores['calibration_prevalence'])}; "
            f"the test folder's is {number(scores['prevalence'].iloc[0])}. "
            "Until now it had never been evaluated on test.")


def calibration_change(scores: pd.DataFrame) -> str:
    """Per model: the mean Brier score and ECE of the raw score and of the calibrated probability, and in how many
    replicates calibrating made each larger."""
    parts = []
    for model, part in scores.groupby("model", sort=False):
        wide = part.pivot(index="seed", columns="output", values=["brier", "ece"])
        changes = []
        for metric, name in (("brier", "Brier score"), ("ece", "ECE")):
            raw, calibrated = wide[(metric, "score")], wide[(metric, "probability")]
            changes.append(f"{name} {number(raw.mean())} → {number(calibrated.mean())} (larger in "
                           f"{int((calibrated > raw).sum())} of {len(wide)} replicates)")
        parts.append(f"{model_title(model)}: " + ", ".join(changes))
    return "; ".join(parts)


def direction(values: pd.Series, above: str, below: str, mixed: str) -> str:
    """``above`` when every value is positive, ``below`` when every one is negative, else ``mixed``."""
    return above if (values > 0).all() else below if (values < 0).all() else mixed


def calibration_reading(scores: pd.DataFrame, runs: list[compare.Run]) -> str:
    """What the table says about the calibrated probability on test, and why, from the runs' own records."""
    fitted = pd.DataFrame([compare.run_calibration(run)[0] for run in runs])
    auc = {subset: pd.Series([evaluate.compute_metrics(frame["target"], frame["prob"], 0.5)["roc_auc"]
                              for frame in (run.val if subset == "validation" else run.test for run in runs)])
           for subset in ("validation", "test")}
    by_output = scores.pivot_table(index=["model", "seed"], columns="output", values="brier")
    worse = by_output["probability"] - by_output["score"]
    probability = scores[scores["output"] == "probability"]
    stretch = direction(fitted["slope"] - 1, "stretches the score", "compresses the score", "rescales the score")
    push = direction(fitted["intercept"], " and shifts it towards PNEUMONIA", " and shifts it towards NORMAL", "")
    verdict = direction(worse, (
        "In every run the calibrated probability is further from the truth on the test images than the raw score: "
        "the `probability` column of `cxrlib.predict` is not a trustworthy P(PNEUMONIA) on images like these, and "
        "the raw score, closer to the observed shares here, is not a probability either."), (
        "In every run the calibrated probability is closer to the truth on the test images than the raw score."), (
        "Calibrating helps in some runs and harms in others."))
    return (f"Raw score → calibrated probability, mean over replicates: {calibration_change(scores)}. The calibrated "
            f"probability's mean on the test images is {range_text(probability['mean_output'])} against a PNEUMONIA "
            f"share of {number(probability['prevalence'].iloc[0])}. The calibration was fitted on validation images "
            f"(ROC-AUC {range_text(auc['validation'])}; test {range_text(auc['test'])}); it {stretch} (slope "
            f"{range_text(fitted['slope'], 2)} on the logit scale){push} (intercept "
            f"{range_text(fitted['intercept'], 2)}). {verdict}")


def calibration_section(setup: ComparisonSetup) -> pd.DataFrame:
    """Reliability curves with the band across replicates, Brier score and ECE per model, for the raw score and
    for the calibrated probability users get; writes calibration.csv next to the report. Returns the scores."""
    trained = trained_runs(setup)
    scores = compare.calibration_scores(trained)
    write_atomic(Path(setup.params["report_dir"]) / CALIBRATION_FILE,
                 lambda partial: scores.to_csv(partial, index=False))
    display(Markdown(calibration_sentence(scores)))
    display(plots.plot_reliability_band(compare.summarise_reliability(compare.reliability_rows(trained)),
                                        calibration_axes(scores)))
    display(readable(calibration_table(scores)))
    display(Markdown(calibration_reading(scores, trained)))
    return scores


# ---------------------------------------------------------------- failures and learning curves

def score_text(row: pd.Series, model: str) -> str:
    """``ResNet-50 0.12 (0.05–0.30), wrong 7/7``: a model's mean score on one image across replicates."""
    return (f"{model_title(model)} {row[f'{model}_mean']:.2f} ({row[f'{model}_min']:.2f}–{row[f'{model}_max']:.2f}), "
            f"wrong {row[f'{model}_wrong']}/{row['replicates']}")


def captions(table: pd.DataFrame, model_a: str, model_b: str) -> list[str]:
    """One caption per image: file name, true label (with subtype) and both models' scores."""
    subgroups = compare.with_subgroups(table)["subgroup"]
    return [f"{Path(row.path).name}\ntrue: {SUBGROUP_NAMES[subgroup]}\n{score_text(row, model_a)}\n"
            f"{score_text(row, model_b)}" for row, subgroup in zip((row for _, row in table.iterrows()), subgroups)]


def failure_counts_sentence(table: pd.DataFrame, model_a: str, model_b: str) -> str:
    """How many test images both models get wrong in every replicate, in some, and how many the models split."""
    replicates = int(table["replicates"].max())
    always = int((table["both_wrong"] == replicates).sum())
    sometimes = int((table["both_wrong"] > 0).sum())
    apart = int(((table[f"{model_a}_mean"] >= 0.5) != (table[f"{model_b}_mean"] >= 0.5)).sum())
    return (f"Of {len(table)} test images, {model_title(model_a)} and {model_title(model_b)} are both wrong in all "
            f"{replicates} replicates on {always} and both wrong in at least one replicate on {sometimes}; their mean "
            f"scores fall on opposite sides of 0.5 for {apart}. Each panel: the file name, the true label (the "
            "subtype from the file name), and per model the mean score across replicates (lowest–highest) and the "
            "replicates in which it was wrong at its threshold; the images as stored in the data set.")


def failures_section(setup: ComparisonSetup, n_images: int = GALLERY_IMAGES) -> pd.DataFrame:
    """The test images both models get wrong in the most replicates and those they disagree on most, as images
    with their scores and true labels. Returns the per-image table."""
    model_a, model_b = compared_pairs(setup)[0][::-1]
    table = compare.image_failures(trained_runs(setup), model_a, model_b)
    display(Markdown(failure_counts_sentence(table, model_a, model_b)))
    galleries = {"Both models wrong, in the most replicates": compare.both_wrong(table, n_images),
                 "The largest gaps between the models' mean scores": compare.most_disagreed(table, n_images)}
    for title, chosen in galleries.items():
        display(plots.plot_image_gallery(list(chosen["path"]), captions(chosen, model_a, model_b), title))
    return table


def best_epoch_sentence(runs: list[compare.Run]) -> str:
    """Per model: the best epochs (highest validation ROC-AUC; counted from 1) of its replicates."""
    parts = []
    for model in dict.fromkeys(run.arch for run in runs):
        histories = [run.history for run in runs if run.arch == model]
        best = sorted(int(history.loc[history["val_auc"].idxmax(), "epoch"]) + 1 for history in histories)
        parts.append(f"{model_title(model)} {', '.join(map(str, best))} (of {max(len(h) for h in histories)} epochs)")
    return ("Each replicate's saved model is its epoch with the highest validation ROC-AUC (▼): " + "; ".join(parts)
            + ". The training loss is measured on augmented images with dropout on and class weights applied, the "
            "validation loss on the validation images as they are, unweighted; both with label smoothing, so neither "
            "reaches 0.")


def learning_curves_section(setup: ComparisonSetup) -> None:
    """Training and validation loss and ROC-AUC per epoch, every replicate of each model."""
    trained = trained_runs(setup)
    display(plots.plot_learning_curves(trained))
    display(Markdown(best_epoch_sentence(trained)))
