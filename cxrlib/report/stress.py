"""The stress test in words and tables (notebook 04's section, docs/STRESS.md): per architecture, per shift and
strength, the share of each class called PNEUMONIA at the run's recorded threshold, the ROC-AUC, the share flagged
out of distribution and the decisions that flipped without a flag, across the replicates that have records; and the
validation-only border check (scores with the black border masked or cropped)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd
from IPython.display import Markdown, display

from cxrlib.contract import (ARCHS, BORDER_FILE, REPO_ROOT, RUN_RECORD_FILE, STRESS_FILE, STRESS_SHIFTS_FILE,
                             repo_relative)
from cxrlib.report.format import DASH, is_missing, minus, model_title, number, percent
from cxrlib.stress.acquisition import STATISTICS, read_acquisition_record
from cxrlib.stress.shifts import REFERENCE
from cxrlib.stress.summary import BORDER_VERSIONS, METRICS, border_summary, run_stress_metrics, summarise_runs

COLUMN_TITLES = {"normal_called_pneumonia": "NORMAL called PNEUMONIA", "pneumonia_called_pneumonia":
                 "PNEUMONIA called PNEUMONIA", "roc_auc": "ROC-AUC", "ood_flagged": "flagged OOD",
                 "flipped": "decisions flipped", "flipped_unflagged": "flipped, not flagged"}
BORDER_TITLES = {"count": "images", "black_in_band": "≥ 1% of the outer band black",
                 "framed": "black edge rows or columns", "called": "called PNEUMONIA",
                 "called_masked": "called PNEUMONIA, band masked", "called_cropped": "called PNEUMONIA, frame cropped",
                 "change_masked": "mean score change, masked", "change_cropped": "mean score change, cropped",
                 "roc_auc": "ROC-AUC", "roc_auc_masked": "ROC-AUC, masked", "roc_auc_cropped": "ROC-AUC, cropped"}
CAUGHT_SHARE = 0.5  # a shift "is caught" when the flag fires on at least this share of its images
UNFLAGGED_FLIP_SHARE = 0.05  # a shift "flips decisions unflagged" when at least this share of images flip unflagged
# The two shifts the one plain sentence names: the mildest declared strength of a tighter field of view and of a darker
# exposure, both within what another X-ray machine or technician produces every day (chosen with the declaration).
PLAIN_SHIFTS = {("crop", 0.9): "the field of view 10% tighter on each side",
                ("exposure", 0.8): "the exposure 20% darker"}
MEASUREMENT_RUNS = REPO_ROOT / "reports" / "stress-cpu" / "runs"  # the committed measurement docs/STRESS.md shows
NOTE_FILE = REPO_ROOT / "docs" / "STRESS.md"
RECORD_COMMAND = ("python -m cxrlib.stress runs/<profile>/<arch>/seed-<k> --out-dir "
                  "reports/<profile>/runs/<arch>/seed-<k>")


def records_metrics(record_dirs: Sequence[Path]) -> list[pd.DataFrame]:
    """``run_stress_metrics`` of every records folder that holds a stress record."""
    return [metrics for metrics in map(run_stress_metrics, record_dirs) if metrics is not None]


def cell(mean, low, high, metric: str) -> str:
    """One table cell: a share in percent or the ROC-AUC, with its interval across replicates when there is one."""
    if metric == "roc_auc":
        shown, bounds = number(mean), (number(low), number(high))
    else:
        shown, bounds = percent(mean), (percent(max(low, 0.0)).rstrip("%"), percent(min(high, 1.0)))
    return shown if is_missing(low) or is_missing(high) else f"{shown} ({bounds[0]}–{bounds[1]})"


def condition_name(shift: str, strength: float) -> str:
    """``crop 0.8``; the unshifted images as ``none``."""
    return REFERENCE if shift == REFERENCE else f"{shift} {strength:g}"


def arch_table(summary: pd.DataFrame, arch: str) -> pd.DataFrame:
    """One architecture's rows: shift, strength and a cell per metric (mean and interval across replicates)."""
    rows = summary[summary["arch"] == arch]
    cells = rows.assign(text=[cell(*values) for values in rows[["mean", "low", "high", "metric"]].to_numpy()])
    conditions = pd.MultiIndex.from_frame(rows[["shift", "strength"]].drop_duplicates())  # the declaration's order
    wide = cells.pivot_table(index=["shift", "strength"], columns="metric", values="text", aggfunc="first")
    table = wide.reindex(index=conditions, columns=list(METRICS)).rename(columns=COLUMN_TITLES).reset_index()
    table["strength"] = [DASH if shift == REFERENCE else f"{strength:g}"
                         for shift, strength in zip(table["shift"], table["strength"])]
    return table


def conditions_where(summary: pd.DataFrame, arch: str, metric: str, least: float) -> list[str]:
    """The shifted conditions of ``arch`` whose mean ``metric`` is at least ``least``, with that mean in percent."""
    rows = summary[(summary["arch"] == arch) & (summary["metric"] == metric) & (summary["shift"] != REFERENCE)
                   & (summary["mean"] >= least)]
    return [f"{condition_name(shift, strength)} ({percent(mean, 0)})"
            for shift, strength, mean in rows[["shift", "strength", "mean"]].to_numpy()]


def flag_sentences(summary: pd.DataFrame, arch: str) -> str:
    """Which shifts the OOD flag catches, and which flip decisions without a flag, for one architecture."""
    caught = conditions_where(summary, arch, "ood_flagged", CAUGHT_SHARE)
    unflagged = conditions_where(summary, arch, "flipped_unflagged", UNFLAGGED_FLIP_SHARE)
    caught_text = (f"The OOD flag fires on at least {CAUGHT_SHARE:.0%} of the images under "
                   f"{', '.join(caught)}" if caught else f"The OOD flag fires on fewer than {CAUGHT_SHARE:.0%} of the "
                   "images under every shift")
    unflagged_text = (f"decisions flip without a flag for at least {UNFLAGGED_FLIP_SHARE:.0%} of the test images "
                      f"under {', '.join(unflagged)}" if unflagged else "no shift flips decisions without a flag for "
                      f"{UNFLAGGED_FLIP_SHARE:.0%} or more of the test images")
    return f"**{model_title(arch)}.** {caught_text}; {unflagged_text}."


def replicates_text(summary: pd.DataFrame, arch: str) -> str:
    """How many replicates a table averages, and what its brackets hold."""
    count = int(summary.loc[summary["arch"] == arch, "replicates"].max())
    return ("one replicate: single values, no interval" if count == 1 else
            f"{count} replicates: mean and 95% t-interval across them")


def stress_summary(record_dirs: Sequence[Path]) -> pd.DataFrame | None:
    """``summarise_runs`` of the records folders that hold a stress record; None when none does."""
    metrics = records_metrics(record_dirs)
    return summarise_runs(metrics) if metrics else None


def condition_mean(summary: pd.DataFrame, arch: str, metric: str, shift: str, strength: float | None = None) -> float:
    """The mean ``metric`` of one architecture under one condition (any strength for the unshifted images)."""
    rows = summary[(summary["arch"] == arch) & (summary["metric"] == metric) & (summary["shift"] == shift)]
    return float(rows["mean"].iloc[0] if strength is None else rows.loc[rows["strength"] == strength, "mean"].iloc[0])


def has_plain_shifts(summary: pd.DataFrame) -> bool:
    """Whether every architecture of ``summary`` was measured under each of PLAIN_SHIFTS."""
    measured = summary.groupby("arch")[["shift", "strength"]].apply(lambda rows: set(map(tuple, rows.to_numpy())))
    return all(set(PLAIN_SHIFTS) <= conditions for conditions in measured)


def plain_sentence(summary: pd.DataFrame) -> str | None:
    """The stress test in one plain sentence: per architecture, the share of NORMAL test images called PNEUMONIA
    unshifted and under each of PLAIN_SHIFTS, and the largest share the OOD flag fired on under them; None when the
    records lack one of those shifts (a declaration without them)."""
    if not has_plain_shifts(summary):
        return None
    archs = list(dict.fromkeys(summary["arch"]))
    called = [f"{percent(condition_mean(summary, arch, 'normal_called_pneumonia', REFERENCE))}"
              f"{' unshifted' if index == 0 else ''} to "
              + " and ".join(percent(condition_mean(summary, arch, "normal_called_pneumonia", shift, strength))
                             for shift, strength in PLAIN_SHIFTS)
              + f" for {model_title(arch)}" for index, arch in enumerate(archs)]
    flagged = max(condition_mean(summary, arch, "ood_flagged", shift, strength)
                  for arch in archs for shift, strength in PLAIN_SHIFTS)
    shifts = " or ".join(f"{words} ({condition_name(shift, strength)})"
                         for (shift, strength), words in PLAIN_SHIFTS.items())
    return (f"With {shifts}, the share of NORMAL test X-rays called PNEUMONIA went from {', and from '.join(called)}, "
            f"while the out-of-distribution flag fired on at most {percent(flagged)} of the images so changed.")


def measured_dirs(runs_dir: Path | None = None) -> list[Path]:
    """The records folders under ``runs_dir`` (``<arch>/seed-<k>``; default: the committed stress measurement),
    architectures in the project's order."""
    runs_dir = MEASUREMENT_RUNS if runs_dir is None else Path(runs_dir)
    return [path for arch in ARCHS for path in sorted((runs_dir / arch).glob("seed-*")) if path.is_dir()]


def measured_sentence(runs_dir: Path | None = None) -> str | None:
    """``plain_sentence`` of the records under ``runs_dir`` (default: the committed stress measurement); None when
    none holds a stress record."""
    summary = stress_summary(measured_dirs(runs_dir))
    return None if summary is None else plain_sentence(summary)


def missing_records_note() -> str:
    """The one sentence shown when no run has a stress record, with the command that creates one."""
    return (f"No run here has a stress-test record (`{STRESS_FILE}`): runs trained from now on record it, and "
            f"`{RECORD_COMMAND}` creates it for a run whose model file still exists.")


def section(runs) -> pd.DataFrame | None:
    """Notebook 04's stress-test section for the trained runs among ``runs`` (``compare.Run``); returns the summary."""
    summary = stress_summary([run.run_dir for run in runs if run.arch in ARCHS and run.run_dir is not None])
    if summary is None:
        display(Markdown(missing_records_note()))
        return None
    display(Markdown(f"Shifts as declared in `{repo_relative(STRESS_SHIFTS_FILE)}`; every test image, at each run's "
                     "recorded threshold; `none` is the unshifted image that decisions flip from."))
    for arch in dict.fromkeys(summary["arch"]):
        display(Markdown(f"**{model_title(arch)}** ({replicates_text(summary, arch)})"))
        display(arch_table(summary, arch).style.hide(axis="index"))
        display(Markdown(flag_sentences(summary, arch)))
    return summary



def border_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``border_summary`` for reading: shares in percent, score changes signed, ROC-AUC with three decimals."""
    shown = pd.DataFrame({"validation images": summary["images"], BORDER_TITLES["count"]: summary["count"]})
    for column in ("black_in_band", "framed", *(f"called{suffix}" for suffix in BORDER_VERSIONS)):
        shown[BORDER_TITLES[column]] = summary[column].map(percent)
    for column in ("change_masked", "change_cropped"):
        shown[BORDER_TITLES[column]] = summary[column].map(lambda value: minus(f"{value:+.3f}"))
    for column in (f"roc_auc{suffix}" for suffix in BORDER_VERSIONS):
        shown[BORDER_TITLES[column]] = summary[column].map(number)
    return shown


def border_note(records_dir: Path) -> str | None:
    """A run's border check as a Markdown heading and table; None when its records hold no border.csv."""
    path = Path(records_dir) / BORDER_FILE
    if not path.is_file():
        return None
    info = json.loads((Path(records_dir) / RUN_RECORD_FILE).read_text())
    summary = border_summary(pd.read_csv(path), float(info["threshold"]["value"]))
    return "\n".join([f"### {model_title(info['arch'])}, seed {info['seed']}", "",
                      border_table(summary).to_markdown(index=False, disable_numparse=True), "",
                      border_sentence(summary.set_index("images")), ""])


def border_sentence(summary: pd.DataFrame) -> str:
    """What masking and cropping did to the NORMAL validation images' decisions and to the ROC-AUC."""
    normal, everything = summary.loc["NORMAL"], summary.loc["all"]
    change = minus(f"{normal['change_masked']:+.3f}")
    return (f"Masking the black band moves the share of NORMAL validation images called PNEUMONIA from "
            f"{percent(normal['called'])} to {percent(normal['called_masked'])} (cropping the frame: "
            f"{percent(normal['called_cropped'])}), their mean score by {change}, and the "
            f"validation ROC-AUC from {number(everything['roc_auc'])} to {number(everything['roc_auc_masked'])} "
            f"(cropped: {number(everything['roc_auc_cropped'])}).")


def markdown_note(record_dirs: Sequence[Path], commands: Sequence[str], acquisition: Path | None = None) -> str:
    """docs/STRESS.md from runs' records folders: the commands that made them, each architecture's stress table with
    what the OOD flag catches and misses, each run's validation-only border check and, given an ``acquisition``
    record, the acquisition check's section."""
    summary = stress_summary(record_dirs)
    if summary is None:
        raise ValueError(f"none of {[str(path) for path in record_dirs]} holds a {STRESS_FILE}; "
                         f"{missing_records_note()}")
    sources = ", ".join(f"`{repo_relative(path)}`" for path in record_dirs)
    sentence = plain_sentence(summary)
    lines = ["# Stress test: decisions under acquisition shifts", "", *([f"**{sentence}**", ""] if sentence else []),
             f"Generated by `scripts/stress_note.py` from the records in {sources}. Shifts as declared in "
             f"`{repo_relative(STRESS_SHIFTS_FILE)}`; every test image at each run's recorded "
             "threshold; `none` is the unshifted image that decisions flip from. The records were made with:", "",
             "```bash", *commands, "```", ""]
    for arch in dict.fromkeys(summary["arch"]):
        lines += [f"## {model_title(arch)} ({replicates_text(summary, arch)})", "",
                  arch_table(summary, arch).to_markdown(index=False, disable_numparse=True), "",
                  flag_sentences(summary, arch), ""]
    borders = [note for note in map(border_note, record_dirs) if note is not None]
    if borders:
        lines += ["## Does the decision depend on the black border? (validation images only)", "",
                  "Each run's validation images scored as decoded, with the black pixels of their outer band (10% of "
                  "each side) set to the median grey level of the centre the band encloses (masked), and with the "
                  "frame of black edge rows and columns cropped away and the inside stretched back (cropped). Images "
                  "without black there are unchanged by either, so every change comes from images with a black "
                  "border.", "",
                  *borders]
    if acquisition is not None:
        lines += [acquisition_note(acquisition, summary, commands)]
    return "\n".join(lines)


ACQUISITION_TITLE = "## What would catch these shifts? (training and validation images only)"
ACQUISITION_PROGRAM = "cxrlib.stress.acquisition_check"  # the command that writes the record
ACQUISITION_MOVED = 1.0  # a statistic "moved" under a shift when its median moved at least this many reference SDs
ACQUISITION_TITLES = {"flagged": "validation images flagged", "flagged_normal": "NORMAL flagged",
                      "flagged_pneumonia": "PNEUMONIA flagged"}
ADOPTING = ("Adopting it would take: fitting the reference when a run trains (its training images at its image "
            "size, beside ood.npz) and checking its rate on validation as the OOD flag's is; a predict field and "
            "words for what a flag means (the image was taken unlike the training images, not that the model is "
            "wrong; it could also flag another clinic's harmless acquisition); and its false-flag share on outside X-rays measured before it is turned on. "
            "It is not wired into `cxrlib.predict`: this measurement informs that decision.")


def acquisition_shifted(record: pd.DataFrame) -> pd.DataFrame:
    """The validation rows of an acquisition record under a shift (not the unshifted one), in record order."""
    return record[(record["subset"] == "val") & (record["shift"] != REFERENCE)]


def acquisition_conclusion(record: pd.DataFrame) -> str:
    """One plain sentence from an acquisition record: its unshifted false-flag share against the declared rate, the
    shifts whose validation images it flags at least CAUGHT_SHARE of, and those it flags fewer of."""
    unshifted = record[(record["subset"] == "val") & (record["shift"] == REFERENCE)].iloc[0]
    shifted = acquisition_shifted(record)
    named = [(f"{condition_name(shift, strength)} ({percent(flagged)})", flagged >= CAUGHT_SHARE)
             for shift, strength, flagged in shifted[["shift", "strength", "flagged"]].to_numpy()]
    caught, missed = [name for name, hit in named if hit], [name for name, hit in named if not hit]
    caught_text = (f"flags at least {CAUGHT_SHARE:.0%} of the validation images under {', '.join(caught)}" if caught
                   else f"flags fewer than {CAUGHT_SHARE:.0%} of the validation images under every shift")
    missed_text = f" and fewer than {CAUGHT_SHARE:.0%} under {', '.join(missed)}" if missed and caught else ""
    return (f"The acquisition check flagged {percent(unshifted['flagged'])} of the unshifted validation images "
            f"(declared: {percent(unshifted['rate'])}); it {caught_text}{missed_text}.")


def acquisition_normal_sentence(record: pd.DataFrame) -> str:
    """The shifts under which the acquisition check flags at least CAUGHT_SHARE of the NORMAL validation images, the
    class whose decisions the shifts flip."""
    shifted = acquisition_shifted(record)
    caught = [f"{condition_name(shift, strength)} ({percent(flagged)})" for shift, strength, flagged in
              shifted[["shift", "strength", "flagged_normal"]].to_numpy() if flagged >= CAUGHT_SHARE]
    return (f"Of the NORMAL validation images, whose decisions the shifts flip to PNEUMONIA, it flags at least "
            f"{CAUGHT_SHARE:.0%} under {', '.join(caught) or 'no shift'}.")


def moved_statistics(row: pd.Series) -> str:
    """The statistics whose median moved at least ACQUISITION_MOVED reference SDs under one condition, largest
    first, signed; a dash when none did."""
    moved = sorted(((name, row[f"z_{name}"]) for name in STATISTICS if abs(row[f"z_{name}"]) >= ACQUISITION_MOVED),
                   key=lambda item: -abs(item[1]))
    return ", ".join(minus(f"{name} {value:+.1f}") for name, value in moved) or DASH


def acquisition_table(record: pd.DataFrame) -> pd.DataFrame:
    """The validation rows of an acquisition record for reading: shares in percent, the statistics each moved."""
    rows = record[record["subset"] == "val"]
    table = pd.DataFrame({"shift": rows["shift"], "strength": [DASH if shift == REFERENCE else f"{strength:g}"
                                                               for shift, strength in rows[["shift", "strength"]].to_numpy()]})
    for column, title in ACQUISITION_TITLES.items():
        table[title] = rows[column].map(percent)
    table["median statistics moved (reference SDs)"] = [moved_statistics(row) for _, row in rows.iterrows()]
    return table


def ood_comparison(summary: pd.DataFrame | None, record: pd.DataFrame) -> str:
    """In words, the model-feature OOD flag on test (any architecture) beside the acquisition check on validation:
    the shifts that flip decisions unflagged on test, which of them the acquisition check flags; empty without a
    stress summary."""
    if summary is None:
        return ""
    unflagged = summary[(summary["metric"] == "flipped_unflagged") & (summary["shift"] != REFERENCE)
                        & (summary["mean"] >= UNFLAGGED_FLIP_SHARE)]
    conditions = list(dict.fromkeys(map(tuple, unflagged[["shift", "strength"]].to_numpy())))
    shares = {(shift, strength): flagged for shift, strength, flagged in
              acquisition_shifted(record)[["shift", "strength", "flagged"]].to_numpy()}
    measured = [(condition_name(*condition), shares[condition]) for condition in conditions if condition in shares]
    caught = [f"{name} ({percent(share)})" for name, share in measured if share >= CAUGHT_SHARE]
    missed = [f"{name} ({percent(share)})" for name, share in measured if share < CAUGHT_SHARE]
    return (f"Beside the model-feature OOD flag, in words only (it was measured on the test images, this check on the "
            f"validation images: different images): of the {len(measured)} shifts that flipped at least "
            f"{UNFLAGGED_FLIP_SHARE:.0%} of a model's test decisions without an OOD flag, the acquisition check flags "
            f"at least {CAUGHT_SHARE:.0%} of the validation images under {', '.join(caught) or 'none'}"
            f"{'; it misses ' + ', '.join(missed) if missed else ''}.")


def acquisition_note(path: Path, summary: pd.DataFrame | None = None, commands: Sequence[str] = ()) -> str:
    """docs/STRESS.md's acquisition-check section from its record (``acquisition.csv``): what it measures, the
    command among ``commands`` that wrote it, the per-shift table, the conclusion and, with the stress ``summary``,
    the comparison with the OOD flag in words."""
    record = read_acquisition_record(path)
    command = next((line.strip() for line in commands if ACQUISITION_PROGRAM in line), None)
    made = (f"Made by `{command}` (in the block above)" if command else "Made") + f"; CPU: {record['cpu'].iloc[0]}."
    training = record[record["subset"] == "train"].iloc[0]
    unshifted = record[(record["subset"] == "val") & (record["shift"] == REFERENCE)].iloc[0]
    statistics = "; ".join(f"`{name}`, {meaning}" for name, meaning in STATISTICS.items())
    return "\n".join([
        ACQUISITION_TITLE, "",
        f"A model-independent acquisition check (`cxrlib.stress.acquisition`), measured in `{repo_relative(path)}`. "
        f"Per image, decoded as training decodes it at {int(training['image_size'])} px, ten statistics: "
        f"{statistics}. Reference: the {int(training['reference_images'])} training images of the patient split with "
        f"seed {int(training['split_seed'])}; each statistic standardised with their mean and SD, an image's "
        "score is its Mahalanobis distance to their mean (Ledoit-Wolf shrunk covariance), flagged above the "
        f"training images' {1 - training['rate']:.0%} quantile (declared false-flag rate {percent(training['rate'])}, "
        "as the OOD flag's; declared in the code before any shifted image was measured). Measured on the "
        f"{int(unshifted['images'])} validation images of that split, unshifted and under every shift of "
        f"`{repo_relative(STRESS_SHIFTS_FILE)}` (noise seeded per image as in the stress test). No test image was "
        f"read. {made}", "",
        acquisition_table(record).to_markdown(index=False, disable_numparse=True), "",
        f"**{acquisition_conclusion(record)}** {acquisition_normal_sentence(record)} "
        f"{ood_comparison(summary, record)}".rstrip(), "",
        ADOPTING, ""])
