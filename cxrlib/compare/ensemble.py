"""The ensemble of several runs: their averaged probabilities as a new ``Run`` with its own validation threshold."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from cxrlib import evaluate
from cxrlib.contract import ENSEMBLE, PREDICTION_COLUMNS

from .runs import Run, aligned_subset


def _combine(prob_columns: list[np.ndarray], method: str) -> np.ndarray:
    """The members' probabilities averaged per image, directly ('mean') or in logit space ('logit')."""
    stacked = np.vstack(prob_columns)
    if method == "mean":
        return stacked.mean(axis=0)
    if method == "logit":
        eps = 1e-7
        return expit(logit(np.clip(stacked, eps, 1 - eps)).mean(axis=0))
    raise ValueError(f"unknown ensemble method {method!r}; use 'mean' or 'logit'")


def make_ensemble(runs: Sequence[Run], method: str = "mean", policy: str | None = None,
                  target_sensitivity: float | None = None, name: str = ENSEMBLE) -> Run:
    """Average the runs' probabilities (or their logits); choose its threshold on the ensemble's val rows.

    The policy and its parameters (target_sensitivity, delta, fixed_threshold) default to the first run's, so
    the ensemble's threshold is chosen like its members'.
    """
    if len(runs) < 2:
        raise ValueError(f"an ensemble needs at least two runs, got {len(runs)}")
    member_policy, member_keywords = runs[0].threshold_policy()
    policy = policy or member_policy or "youden"
    policy_kwargs = {"target_sensitivity": 0.95} | member_keywords
    if target_sensitivity is not None:
        policy_kwargs["target_sensitivity"] = target_sensitivity
    parts = []
    for subset in ("val", "test"):
        frames = aligned_subset(runs, subset)
        combined = frames[0][list(PREDICTION_COLUMNS)].copy()
        combined["prob"] = _combine([frame["prob"].to_numpy() for frame in frames], method)
        parts.append(combined)
    predictions = pd.concat(parts, ignore_index=True)
    val = predictions[predictions["subset"] == "val"]
    threshold = evaluate.choose_threshold(val["target"], val["prob"], policy, **policy_kwargs)
    threshold_info = {"policy": policy, "value": threshold, **policy_kwargs, "chosen_on": "val"}
    info = {"name": name, "arch": ENSEMBLE, "members": [run.name for run in runs], "method": method,
            "threshold": threshold_info}
    return Run(name=name, arch=ENSEMBLE, info=info, predictions=predictions, threshold=threshold,
               threshold_info=threshold_info)
