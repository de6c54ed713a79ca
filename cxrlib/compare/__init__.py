"""Compare trained runs from their run directories: paired tests, ensemble and the results table.

Nothing here retrains or re-predicts: everything reads ``predictions.csv`` / ``run.json`` /
``history.csv`` written by ``cxrlib.train`` (contract in docs/ARCHITECTURE.md).
Confidence intervals resample test *patients* within class (``patient_id``, unique within the test split),
each with all its images; DeLong and McNemar are image-level tests and are labelled so.
Byte-identical test images count once after ``merge_duplicates``.

One module per job; callers use the names re-exported here (``compare.load_runs``, ``compare.Run``, ...):

- ``runs``: ``Run``, reading run directories and checking they form one comparison, aligning their rows,
  re-choosing a run's threshold (``with_policy``);
- ``duplicates``: byte-identical images merged to one row per image;
- ``paired``: paired tests of two runs (McNemar, DeLong, paired patient bootstrap) and their disagreements;
- ``ensemble``: the averaged-probability ensemble as a new ``Run``;
- ``tables``: per-run test metrics with CIs, the per-class report and the results table.
- ``within_group``: a run's test metrics within each group of images stored alike, with patient-bootstrap
  intervals (the shortcut audit).
- ``subgroups``: test images by the subgroup their file names state (NORMAL, bacterial, viral pneumonia), each run's
  share classified correctly per subgroup (and stored-size group), across replicates and paired between models;
- ``reliability``: the raw score and the Platt-calibrated probability judged on the test images (Brier score, ECE,
  reliability bins), per run and across replicates;
- ``failures``: per test image across replicates, both models' scores; the images both get wrong and the ones they
  disagree on most.
"""
from .duplicates import merge_duplicate_rows, merge_duplicates
from .ensemble import make_ensemble
from .failures import both_wrong, image_failures, most_disagreed, replicate_pairs
from .paired import compare_pair, delong_covariance, delong_test, disagreements, mcnemar_test
from .reliability import (calibration_scores, reliability_bins, reliability_rows, run_calibration, scored_test,
                          summarise_reliability)
from .runs import PER_RUN_SETTINGS, Run, aligned_subset, find_run_dirs, load_run, load_runs, with_policy
from .subgroups import (MIN_READABLE_IMAGES, SUBGROUPS, check_subgroup_rows, subgroup_differences, subgroup_of,
                        subgroup_rows, summarise_subgroups, with_subgroups)
from .tables import CI_COLUMNS, TABLE_NAMES, classification_report, evaluate_run, results_table
from .within_group import match_predictions, within_group_intervals, within_group_metrics

__all__ = [
    "CI_COLUMNS", "PER_RUN_SETTINGS", "TABLE_NAMES", "Run", "aligned_subset", "classification_report",
    "compare_pair", "delong_covariance", "delong_test", "disagreements", "evaluate_run",
    "find_run_dirs", "load_run", "load_runs", "make_ensemble", "match_predictions", "mcnemar_test",
    "merge_duplicate_rows", "merge_duplicates", "results_table", "with_policy", "within_group_intervals",
    "within_group_metrics", "both_wrong", "image_failures", "most_disagreed", "replicate_pairs",
    "calibration_scores", "reliability_bins", "reliability_rows", "run_calibration", "scored_test",
    "summarise_reliability", "MIN_READABLE_IMAGES", "SUBGROUPS", "check_subgroup_rows",
    "subgroup_differences", "subgroup_of", "subgroup_rows", "summarise_subgroups", "with_subgroups",
]
