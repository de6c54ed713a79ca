"""Test images by what their file names say (NORMAL, bacterial or viral pneumonia) and each run's share of them
classified correctly: sensitivity within a pneumonia subtype, specificity among NORMAL images.

The data set names every PNEUMONIA file ``person<N>_bacteria_<M>.jpeg`` or ``person<N>_virus_<M>.jpeg``. A
subgroup of fewer than ``MIN_READABLE_IMAGES`` images is too small to read: one image moves its share by more
than 0.03, and a 95% binomial interval around a sensitivity of 0.9 is then wider than ±0.1.
"""
from __future__ import annotations

import re
from pathlib import PurePath
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import sem, t

from cxrlib.contract import POSITIVE_CLASS, model_of
from cxrlib.data.geometry import geometry_groups
from cxrlib.data.index import require_columns

from .runs import Run
from .within_group import match_predictions

NORMAL_SUBGROUP = "NORMAL"
PNEUMONIA_SUBGROUPS = {"bacteria": "bacterial", "virus": "viral"}  # the file name's word -> the subgroup
SUBGROUPS = (NORMAL_SUBGROUP, *PNEUMONIA_SUBGROUPS.values())
SUBTYPE_PATTERN = re.compile(r"_(bacteria|virus)_\d+", re.IGNORECASE)
MIN_READABLE_IMAGES = 30
ALL_GROUPS = "all"  # the group column's value for every stored size together


def subgroup_of(path: str, label: str) -> str:
    """An image's subgroup: NORMAL, or the pneumonia subtype its file name states (bacterial, viral)."""
    if label != POSITIVE_CLASS:
        return NORMAL_SUBGROUP
    match = SUBTYPE_PATTERN.search(PurePath(str(path).replace("\\", "/")).name)
    if match is None:
        raise ValueError(f"{path}: a PNEUMONIA file name must state its subtype as person<N>_bacteria_<M>.jpeg or "
                         "person<N>_virus_<M>.jpeg, as the Kermany data set names them; this copy renamed its files: "
                         "use a copy with the original file names")
    return PNEUMONIA_SUBGROUPS[match.group(1).lower()]


def with_subgroups(rows: pd.DataFrame) -> pd.DataFrame:
    """Prediction rows (``path``, ``label``) with their ``subgroup``."""
    require_columns(rows, ("path", "label"), "with_subgroups")
    return rows.assign(subgroup=[subgroup_of(path, label) for path, label in zip(rows["path"], rows["label"])])


def subgroup_rows(runs: Sequence[Run], images: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per run and subgroup of its test images (and, given the data index ``images``, per stored-size group too):
    images, how many it classifies correctly at its threshold, and that share. Columns: model, seed, subgroup,
    group, images, correct, share_correct; ``group`` is ``all`` for every stored size together."""
    groups = None if images is None else geometry_groups(images)
    frames = []
    for run in runs:
        test = with_subgroups(run.test)
        parts = [test.assign(group=ALL_GROUPS)]
        if images is not None:
            parts.append(match_predictions(test, images, groups).assign(group=lambda rows: rows["group"].astype(str)))
        counted = (pd.concat(parts, ignore_index=True).groupby(["subgroup", "group"], sort=False)["correct"]
                   .agg(images="size", correct="sum").reset_index())
        frames.append(counted.assign(model=model_of(run.arch, run.name), seed=run.seed))
    rows = pd.concat(frames, ignore_index=True)
    rows["share_correct"] = rows["correct"] / rows["images"]
    return rows[["model", "seed", "subgroup", "group", "images", "correct", "share_correct"]]


def check_subgroup_rows(rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """``rows`` as ``subgroup_rows`` makes them (e.g. read back from subgroups.csv); a ValueError naming ``source``
    and the fix otherwise."""
    missing = [column for column in ("model", "seed", "subgroup", "group", "images", "correct", "share_correct")
               if column not in rows]
    if missing:
        raise ValueError(f"{source} lacks columns {missing}; write it again with notebook 04 "
                         "(./run_all.sh --profile <profile> --only 04)")
    unknown = sorted(set(rows["subgroup"]) - set(SUBGROUPS))
    if unknown:
        raise ValueError(f"{source} names subgroups {unknown}, not among {list(SUBGROUPS)}; write it again with "
                         "notebook 04")
    return rows


def summarise_subgroups(rows: pd.DataFrame, min_images: int = MIN_READABLE_IMAGES) -> pd.DataFrame:
    """Per model, subgroup and group across replicates: images, replicates, mean, SD, min and max of the share
    classified correctly, and ``readable`` (at least ``min_images`` images)."""
    check_subgroup_rows(rows, "summarise_subgroups' rows")
    keys = ["model", "subgroup", "group"]
    summary = rows.groupby(keys, sort=False).agg(images=("images", "max"), replicates=("seed", "nunique"),
                                                 mean=("share_correct", "mean"), sd=("share_correct", "std"),
                                                 min=("share_correct", "min"), max=("share_correct", "max"))
    return summary.reset_index().assign(readable=lambda frame: frame["images"] >= min_images)


def subgroup_differences(rows: pd.DataFrame, model: str, reference: str, level: float = 0.95) -> pd.DataFrame:
    """Per subgroup and group, ``model`` − ``reference`` in the share classified correctly, paired by replicate:
    replicates, mean, SD, the ``level`` t-interval across replicates (NaN with one) and how many replicates each
    side was higher in. Descriptive: no plan decides on these."""
    check_subgroup_rows(rows, "subgroup_differences' rows")
    models = set(rows["model"])
    if not {model, reference} <= models:
        raise ValueError(f"subgroup_differences needs rows of {model!r} and {reference!r}; the rows hold "
                         f"{sorted(models)}")
    keys = ["subgroup", "group", "seed"]
    paired = rows[rows["model"] == model].merge(rows[rows["model"] == reference], on=keys, suffixes=("", "_reference"),
                                                validate="one_to_one")
    paired["difference"] = paired["share_correct"] - paired["share_correct_reference"]
    summary = []
    for (subgroup, group), part in paired.groupby(["subgroup", "group"], sort=False):
        values = part["difference"].to_numpy()
        half_width = t.ppf(0.5 + level / 2, len(values) - 1) * sem(values) if len(values) > 1 else np.nan
        summary.append({"model": model, "reference": reference, "subgroup": subgroup, "group": group,
                        "images": int(part["images"].max()), "replicates": len(values), "mean": values.mean(),
                        "sd": values.std(ddof=1) if len(values) > 1 else np.nan,
                        "ci_low": values.mean() - half_width, "ci_high": values.mean() + half_width,
                        "model_higher": int((values > 0).sum()), "reference_higher": int((values < 0).sum())})
    return pd.DataFrame(summary)
