"""Byte-identical images (same sha256 in the data index) counted once: merged rows in each run's predictions."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import pandas as pd

from cxrlib.data.index import relpath_from_path

from .runs import Run


def merge_duplicate_rows(predictions: pd.DataFrame, images: pd.DataFrame, subsets: Sequence[str] = ("test",),
                         source: str = "predictions") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Collapse the ``subsets`` rows of byte-identical images (same ``sha256`` in ``images``) to one row each.

    The kept row is the group's first path in sorted order (its ``patient_id`` is kept); its probability is the
    group's mean, equal to every member's when the model is deterministic. Returns the merged predictions (the
    original row order, contract columns) and the dropped rows (``subset, sha256, path, kept_path``).
    """
    sha256 = predictions["path"].map(relpath_from_path).map(images.set_index("relpath")["sha256"])
    scoped = predictions.assign(sha256=sha256)[predictions["subset"].isin(subsets)]
    unmatched = scoped["sha256"].isna()
    if unmatched.any():
        path = scoped.loc[unmatched, "path"].iloc[0]
        raise ValueError(f"{source}: {unmatched.sum()} predicted images are not in the data index, e.g. {path} "
                         f"(looked up as {relpath_from_path(path)!r}); pass scan_dataset(root).images of the data "
                         "the run was evaluated on")
    groups = scoped.sort_values("path").groupby(["subset", "sha256"], sort=False)
    conflicting = groups["target"].nunique() > 1
    if conflicting.any():
        raise ValueError(f"{source}: byte-identical images carry different labels (sha256 "
                         f"{conflicting[conflicting].index[0][1]}); fix the data set before evaluating")
    kept_path, cumcount = groups["path"].transform("first"), groups.cumcount()
    merged = predictions.copy()
    merged.loc[scoped.index, "prob"] = groups["prob"].transform("mean")
    dropped = scoped.assign(kept_path=kept_path).loc[cumcount.index[cumcount.to_numpy() > 0]]
    return (merged.drop(index=dropped.index).reset_index(drop=True),
            dropped[["subset", "sha256", "path", "kept_path"]].reset_index(drop=True))


def merge_duplicates(runs: Sequence[Run], images: pd.DataFrame,
                     subsets: Sequence[str] = ("test",)) -> tuple[list[Run], pd.DataFrame]:
    """Count byte-identical images once in every run (``merge_duplicate_rows``); ``images`` is
    ``cxrlib.data.scan_dataset(root).images`` (``relpath``, ``sha256``). Only test rows by default, so the
    validation rows that chose each run's recorded threshold stay as they were. Returns the merged runs and
    the dropped rows of all runs (``subset, sha256, path, kept_path``; its length is the number merged).
    """
    merged_runs, dropped = [], []
    for run in runs:
        predictions, removed = merge_duplicate_rows(run.predictions, images, subsets, source=run.name)
        merged_runs.append(dataclasses.replace(run, predictions=predictions))
        dropped.append(removed)
    return merged_runs, pd.concat(dropped).drop_duplicates(["subset", "path"]).reset_index(drop=True)
