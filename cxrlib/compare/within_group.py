"""A run's test predictions matched to their images' geometry groups, and its test metrics within each group.

A model that scores well overall but not within the groups of images stored alike (``data.geometry``) may be
using how an image was stored rather than what its lungs show.
"""
from __future__ import annotations

import pandas as pd

from cxrlib import bootstrap, evaluate
from cxrlib.contract import HEADLINE_METRICS
from cxrlib.data.geometry import geometry_groups
from cxrlib.data.index import relpath_from_path, require_columns


def match_predictions(predictions: pd.DataFrame, images: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Predictions with their index row's geometry ``group``, matched on ``split/label/file``."""
    require_columns(predictions, ("path", "target", "prob"), "within_group_metrics predictions")
    require_columns(images, ("relpath", "target"), "within_group_metrics images")
    index_rows = pd.DataFrame({"relpath": images["relpath"], "index_target": images["target"], "group": groups})
    matched = predictions.assign(relpath=predictions["path"].map(relpath_from_path)).merge(
        index_rows, on="relpath", how="left", validate="many_to_one")
    unmatched = matched.loc[matched["group"].isna(), "path"]
    if len(unmatched):
        raise ValueError(f"{len(unmatched)} prediction path(s) match no image of the index by split/label/file, "
                         f"e.g. {list(unmatched[:3])}; score the same copy of the data the predictions came from.")
    wrong = matched.loc[matched["target"] != matched["index_target"], "path"]
    if len(wrong):
        raise ValueError(f"{len(wrong)} prediction(s) have a target unlike their image's label, e.g. "
                         f"{list(wrong[:3])}; the predictions file does not belong to this data.")
    return matched


def within_group_metrics(predictions: pd.DataFrame, images: pd.DataFrame, threshold: float,
                         groups: pd.Series | None = None) -> pd.DataFrame:
    """Test metrics within each geometry group holding both classes, plus an ``all`` row.

    ``predictions``: test rows with ``path, target, prob`` (paths may come from another machine);
    ``images``: the index (``groups`` defaults to ``geometry_groups(images)``, computed on all of it).
    Columns: images, NORMAL, PNEUMONIA, then ``evaluate.compute_metrics`` at ``threshold``: roc_auc, accuracy,
    sensitivity, specificity.
    """
    rows = {}
    for name, part in _groups_with_both_classes(predictions, images, groups):
        scores = evaluate.compute_metrics(part["target"], part["prob"], threshold)
        rows[name] = {"images": len(part), "NORMAL": int((part["target"] == 0).sum()),
                      "PNEUMONIA": int((part["target"] == 1).sum()),
                      **{metric: scores[metric] for metric in HEADLINE_METRICS}}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("group")


def within_group_intervals(predictions: pd.DataFrame, images: pd.DataFrame, threshold: float,
                           groups: pd.Series | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The headline metrics within each group holding both classes (and ``all``) with 95% intervals that resample
    the group's test children (``predictions`` need ``patient_id``): one row per group and metric (``estimate,
    ci_low, ci_high``)."""
    require_columns(predictions, ("patient_id",), "within_group_intervals predictions")
    frames = []
    for name, part in _groups_with_both_classes(predictions, images, groups):
        scores = bootstrap.bootstrap_metrics(part["target"], part["prob"], threshold, n_boot=n_boot, seed=seed,
                                             groups=part["patient_id"])
        frames.append(scores.loc[list(HEADLINE_METRICS)].reset_index().assign(group=name))
    return pd.concat(frames, ignore_index=True)[["group", "metric", "estimate", "ci_low", "ci_high"]]


def _groups_with_both_classes(predictions: pd.DataFrame, images: pd.DataFrame, groups: pd.Series | None):
    """(group name, its matched rows) for each geometry group holding both classes, then ``all``."""
    groups = geometry_groups(images) if groups is None else groups
    matched = match_predictions(predictions, images, groups)
    parts = [(str(name), rows) for name, rows in matched.groupby("group", observed=True, sort=True)]
    return [(name, part) for name, part in [*parts, ("all", matched)] if part["target"].nunique() > 1]
