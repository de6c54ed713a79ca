"""python -m cxrlib.compare.rerun RERUN_RUNS_DIR [COMMITTED_RUNS_DIR]: does a rerun reproduce the committed run records?

For every <arch>/seed-<k> in both folders it matches the rows of predictions.csv by image (val and test) and
reports the number of images, the largest change of a probability, the images whose decision changed (each side at
its recorded threshold), the change of the threshold, and ROC-AUC and accuracy on the test images of both sides.
Runs in only one folder are listed and do not change the verdict (./run_all.sh --profile cpu reruns seed 1 only).

RERUN_RUNS_DIR is usually runs/<profile> (runs/cpu, runs/cpu-confirmatory). COMMITTED_RUNS_DIR defaults to that
profile's reports/<profile>/runs as committed at git HEAD, read from git and not from the working tree, because a
rerun overwrites reports/<profile>/runs/*/seed-<k>/ there.

Tolerance: training the cpu profile is deterministic on one kind of CPU, so a rerun on the same kind gives
bit-identical probabilities (largest change 0). On another kind of CPU (AVX2 instead of AVX-512, say) float32 sums
run in another order, and training can amplify those last-bit differences far beyond 1e-6: such a rerun is reported
as differing, and the metric columns show by how much. The default 1e-6 accepts rounding in the last bits of float32
(about 17 float32 steps for a probability between 0.5 and 1) and little more; --tolerance 0 asks for bit-identical
results. A rerun is reproduced within the tolerance when both records hold the same images, no probability and no
threshold moved by more than the tolerance, and no decision changed.

Exit status: 0 reproduced, 1 differs, 2 bad input (a missing folder or record, a malformed file: the message
names it and the fix).
"""
from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrlib import evaluate
from cxrlib.contract import HISTORY_FILE, PREDICTIONS_FILE, RECORDS_DIR, REPLICATE_PREFIX, REPO_ROOT, RUN_RECORD_FILE

from .runs import Run, find_run_dirs, load_run, with_policy

DEFAULT_TOLERANCE = 1e-6
COMMITTED_RECORDS = f"reports/cpu/{RECORDS_DIR}"  # the exploratory study's records, relative to the repository
REPRODUCED, DIFFERS, BAD_INPUT = 0, 1, 2
ROW_KEY = ["subset", "path", "target"]  # one image with its label; a label that differs leaves the image unmatched
RECORD_FIX = "restore a committed record with git checkout, or copy the run's records from runs/<profile> again"


class RerunInputError(ValueError):
    """A folder or record that cannot be compared; the message names it and the fix."""


@dataclass
class RunComparison:
    """One <arch>/seed-<k> of both folders: how far the rerun's predictions lie from the committed ones."""

    run: str
    matched_images: int
    unmatched_images: int  # images (with their label) in only one of the two predictions.csv
    largest_change: float  # max |rerun prob - committed prob| over the matched images
    largest_change_image: str
    images_beyond_tolerance: int
    changed_decisions: list[str]  # images predicted PNEUMONIA on one side and NORMAL on the other
    threshold_change: float  # rerun threshold - committed threshold
    threshold_rechosen: bool  # the rerun recorded another policy: its threshold re-chosen by the committed one
    committed_metrics: dict[str, float]  # ROC-AUC and accuracy on the test images
    rerun_metrics: dict[str, float]
    same_record: bool  # run.json identical on both sides: the committed record itself, not a rerun

    def reproduced(self, tolerance: float) -> bool:
        """Same images, no probability or threshold moved by more than ``tolerance``, no decision changed."""
        return not (self.unmatched_images or self.images_beyond_tolerance or self.changed_decisions
                    or abs(self.threshold_change) > tolerance)

    def differences(self, tolerance: float) -> str:
        """What differs, in a few words naming the images."""
        parts = []
        if self.images_beyond_tolerance:
            parts.append(f"{self.images_beyond_tolerance} of {self.matched_images} probabilities moved by more than "
                         f"{tolerance:g} (largest {self.largest_change:.3g} at {self.largest_change_image})")
        if self.changed_decisions:
            parts.append(f"{len(self.changed_decisions)} decisions changed (e.g. {self.changed_decisions[0]})")
        if abs(self.threshold_change) > tolerance:
            parts.append(f"threshold moved by {self.threshold_change:+.3g}")
        if self.unmatched_images:
            parts.append(f"{self.unmatched_images} images in only one record (other data or another split)")
        return f"{self.run}: " + ", ".join(parts)


def committed_records(destination: Path, repo: Path = REPO_ROOT, records: str = COMMITTED_RECORDS) -> Path:
    """Extract ``records`` as committed at git HEAD of ``repo`` into ``destination``; returns the extracted folder."""
    fix = "pass COMMITTED_RUNS_DIR, a folder holding the records as committed (e.g. from a clean checkout)"
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", "HEAD", "--", records],
                                 capture_output=True, check=False)
    except FileNotFoundError:
        raise RerunInputError(f"git is not installed, so the committed {records} cannot be read; {fix}") from None
    if archive.returncode != 0:
        raise RerunInputError(f"cannot read {records} as committed at git HEAD of {repo} "
                              f"({archive.stderr.decode(errors='replace').strip()}); {fix}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination)  # our own git HEAD; no filter= (absent before Python 3.11.4)
    return destination / records


def profile_records(rerun_dir: Path) -> str:
    """The committed records a profile's runs folder is judged against: runs/<profile> -> reports/<profile>/runs."""
    return f"reports/{rerun_dir.resolve().name}/{RECORDS_DIR}"


def _unparsable_csv(run_dir: Path) -> Path:
    """The record CSV of ``run_dir`` pandas cannot read (its parser errors name no file), else ``run_dir``."""
    for path in (run_dir / PREDICTIONS_FILE, run_dir / HISTORY_FILE):
        try:
            pd.read_csv(path)
        except (OSError, ValueError):
            return path
    return run_dir


def _load_run(run_dir: Path) -> Run:
    """``load_run`` with every failure as a RerunInputError naming the file and the fix."""
    try:
        return load_run(run_dir)
    except (OSError, ValueError) as error:
        text = str(error).strip()
        message = text if str(run_dir) in text else f"{_unparsable_csv(run_dir)}: {text}"
        raise RerunInputError(f"{message} ({RECORD_FIX})") from None


def load_records(runs_dir: Path, side: str) -> dict[str, Run]:
    """Every run under ``runs_dir`` by its ``<arch>/seed-<k>``; a seed folder without a readable record is an error."""
    if not runs_dir.is_dir():
        raise RerunInputError(f"the {side} folder {runs_dir} does not exist; give the folder holding <arch>/seed-<k>/ "
                              "run records (a rerun writes them to runs/<profile>)")
    seed_dirs = (path for path in runs_dir.glob(f"*/{REPLICATE_PREFIX}*") if path.is_dir())
    run_dirs = sorted({*find_run_dirs(runs_dir), *seed_dirs})
    if not run_dirs:
        raise RerunInputError(f"the {side} folder {runs_dir} holds no run records (<arch>/seed-<k>/{RUN_RECORD_FILE}); "
                              "give the folder of a profile's runs, e.g. runs/cpu")
    return {run_dir.relative_to(runs_dir).as_posix(): _load_run(run_dir) for run_dir in run_dirs}


def _test_metrics(run: Run) -> dict[str, float]:
    """ROC-AUC and accuracy (at the run's threshold) on its test images."""
    test = run.test
    metrics = evaluate.compute_metrics(test["target"], test["prob"], run.threshold)
    return {"roc_auc": metrics["roc_auc"], "accuracy": metrics["accuracy"]}


def compare_run(name: str, committed: Run, rerun: Run, tolerance: float) -> RunComparison:
    """Match the two runs' predictions by image and measure what changed (thresholds compared under one policy)."""
    committed_policy, policy_parameters = committed.threshold_policy()
    threshold_rechosen = committed_policy is not None and rerun.threshold_policy()[0] != committed_policy
    if threshold_rechosen:
        try:
            rerun = with_policy(rerun, committed_policy, **policy_parameters)
        except ValueError as error:
            raise RerunInputError(f"{committed.run_dir / RUN_RECORD_FILE}: its threshold policy cannot be applied to "
                                  f"the rerun ({error}); {RECORD_FIX}") from None
    rows = committed.predictions.merge(rerun.predictions, on=ROW_KEY, how="outer", suffixes=("_committed", "_rerun"),
                                       indicator=True)
    matched = rows[rows["_merge"] == "both"].reset_index(drop=True)
    change = (matched["prob_rerun"] - matched["prob_committed"]).abs()
    decided = (evaluate.predict_labels(matched["prob_committed"], committed.threshold)
               != evaluate.predict_labels(matched["prob_rerun"], rerun.threshold))
    largest = int(change.idxmax()) if len(change) else None
    return RunComparison(
        run=name, matched_images=len(matched), unmatched_images=int((rows["_merge"] != "both").sum()),
        largest_change=float(change.max()) if len(change) else math.nan,
        largest_change_image="" if largest is None else matched.loc[largest, "path"],
        images_beyond_tolerance=int((change > tolerance).sum()), changed_decisions=list(matched.loc[decided, "path"]),
        threshold_change=rerun.threshold - committed.threshold, threshold_rechosen=threshold_rechosen,
        committed_metrics=_test_metrics(committed), rerun_metrics=_test_metrics(rerun),
        same_record=committed.info == rerun.info)


def comparison_table(comparisons: list[RunComparison], tolerance: float) -> pd.DataFrame:
    """One readable row per compared run."""
    def before_after(comparison: RunComparison, metric: str) -> str:
        return f"{comparison.committed_metrics[metric]:.4f} → {comparison.rerun_metrics[metric]:.4f}"

    return pd.DataFrame([{
        "run": comparison.run,
        "images": comparison.matched_images,
        "only one side": comparison.unmatched_images,
        "max |Δ prob|": f"{comparison.largest_change:.3g}",
        f"> {tolerance:g}": comparison.images_beyond_tolerance,
        "decisions changed": len(comparison.changed_decisions),
        "Δ threshold": f"{comparison.threshold_change:.3g}",
        "ROC-AUC committed → rerun": before_after(comparison, "roc_auc"),
        "accuracy committed → rerun": before_after(comparison, "accuracy"),
    } for comparison in comparisons])


def report(committed: dict[str, Run], rerun: dict[str, Run], tolerance: float) -> tuple[str, int]:
    """The readable report (table, runs on one side, notes, verdict line) and the exit status."""
    shared = sorted(committed.keys() & rerun.keys())
    if not shared:
        raise RerunInputError(f"no <arch>/seed-<k> is in both folders (rerun: {', '.join(sorted(rerun))}; committed: "
                              f"{', '.join(sorted(committed))}); give the folder your rerun wrote (e.g. runs/cpu)")
    comparisons = [compare_run(name, committed[name], rerun[name], tolerance) for name in shared]
    policies = sorted({str(run.threshold_info.get("policy")) for run in committed.values()})
    lines = [comparison_table(comparisons, tolerance).to_string(index=False),
             "(images: val and test images in both records; decisions and accuracy at each side's recorded threshold, "
             f"committed policy {', '.join(policies)}; ROC-AUC and accuracy on the test images)"]
    if committed.keys() - rerun.keys():
        lines.append(f"not rerun (committed only): {', '.join(sorted(committed.keys() - rerun.keys()))}")
    if rerun.keys() - committed.keys():
        lines.append("no committed record to compare with (rerun only): "
                     f"{', '.join(sorted(rerun.keys() - committed.keys()))}")
    rechosen = [comparison.run for comparison in comparisons if comparison.threshold_rechosen]
    if rechosen:
        lines.append(f"note: {', '.join(rechosen)}: the rerun recorded another threshold policy; its threshold was "
                     "re-chosen on its own validation images by the committed run's policy")
    same_records = [comparison.run for comparison in comparisons if comparison.same_record]
    if same_records:
        lines.append(f"note: {', '.join(same_records)}: run.json is identical on both sides, so these are the "
                     "committed records themselves, not a rerun")
    differing = [comparison.differences(tolerance) for comparison in comparisons
                 if not comparison.reproduced(tolerance)]
    if differing:
        lines.append("differs: " + "; ".join(differing))
        return "\n".join(lines), DIFFERS
    largest = max(comparison.largest_change for comparison in comparisons)
    lines.append(f"reproduced within {tolerance:g}: {len(comparisons)} runs match the committed records "
                 f"(largest |Δ probability| {largest:.3g})")
    return "\n".join(lines), REPRODUCED


def _tolerance(text: str) -> float:
    """A finite tolerance >= 0 (argparse type)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"the tolerance must be a finite number >= 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    summary, details = __doc__.split("\n", 1)
    parser = argparse.ArgumentParser(prog="python -m cxrlib.compare.rerun", description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rerun_dir", type=Path, metavar="RERUN_RUNS_DIR",
                        help="the rerun's runs folder holding <arch>/seed-<k>/ (e.g. runs/cpu)")
    parser.add_argument("committed_dir", type=Path, nargs="?", metavar="COMMITTED_RUNS_DIR",
                        help="the records to compare with (default: reports/<profile>/runs as committed at git HEAD, "
                             "<profile> being RERUN_RUNS_DIR's name)")
    parser.add_argument("--tolerance", type=_tolerance, default=DEFAULT_TOLERANCE,
                        help=f"largest accepted change of a probability or threshold (default {DEFAULT_TOLERANCE:g}; "
                             "0 asks for bit-identical results)")
    args = parser.parse_args(argv)
    records = profile_records(args.rerun_dir)
    try:
        rerun = load_records(args.rerun_dir, "rerun")  # first: a mistyped folder is named as such
        with tempfile.TemporaryDirectory() as scratch:
            committed_dir = args.committed_dir or committed_records(Path(scratch), records=records)
            committed = load_records(committed_dir, "committed")
        text, status = report(committed, rerun, args.tolerance)
    except RerunInputError as error:
        print(f"cxrlib.compare.rerun: error: {error}", file=sys.stderr)
        return BAD_INPUT
    source = args.committed_dir or f"{records} as committed at git HEAD"
    print(f"rerun {args.rerun_dir} against {source} (tolerance {args.tolerance:g})\n{text}")
    return status


if __name__ == "__main__":
    sys.exit(main())
