"""The test images two models fail on, across replicates: each image's scores from every replicate of both models,
the images both get wrong and the ones they disagree on most."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from cxrlib.contract import model_of

from .runs import Run

IMAGE_COLUMNS = ["path", "label", "target", "patient_id"]


def replicate_pairs(runs: Sequence[Run], model_a: str, model_b: str) -> pd.DataFrame:
    """Per replicate and test image, both models' scores and whether each was right at its threshold. Columns:
    seed, path, label, target, patient_id, ``<model>_score`` and ``<model>_correct`` for both models."""
    by_model = {model: {run.seed: run for run in runs if model_of(run.arch, run.name) == model}
                for model in (model_a, model_b)}
    if not by_model[model_a] or set(by_model[model_a]) != set(by_model[model_b]):
        raise ValueError(f"replicate_pairs needs runs of {model_a!r} and {model_b!r} for the same seeds; got seeds "
                         f"{sorted(by_model[model_a])} and {sorted(by_model[model_b])}")
    frames = []
    for seed in sorted(by_model[model_a]):
        tests = {model: by_model[model][seed].test for model in (model_a, model_b)}
        if set(tests[model_a]["path"]) != set(tests[model_b]["path"]):
            raise ValueError(f"seed {seed}: {model_a} and {model_b} were tested on different images; compare runs "
                             "made from one copy of the data (merge duplicates in both or in neither)")
        columns = {model: tests[model][["path", "prob", "correct"]].rename(
            columns={"prob": f"{model}_score", "correct": f"{model}_correct"}) for model in (model_a, model_b)}
        frames.append(tests[model_a][IMAGE_COLUMNS].merge(columns[model_a], on="path")
                      .merge(columns[model_b], on="path", validate="one_to_one").assign(seed=seed))
    return pd.concat(frames, ignore_index=True)


def image_failures(runs: Sequence[Run], model_a: str, model_b: str) -> pd.DataFrame:
    """Per test image across replicates: each model's mean, min and max score and the replicates it was wrong in,
    the replicates both were wrong in, and ``score_gap`` (``model_b``'s mean score − ``model_a``'s)."""
    pairs = replicate_pairs(runs, model_a, model_b)
    pairs["both_wrong"] = ~pairs[f"{model_a}_correct"] & ~pairs[f"{model_b}_correct"]
    statistics = {"replicates": ("seed", "nunique"), "both_wrong": ("both_wrong", "sum")}
    for model in (model_a, model_b):
        pairs[f"{model}_wrong"] = ~pairs[f"{model}_correct"]
        statistics |= {f"{model}_{name}": (f"{model}_score", name) for name in ("mean", "min", "max")}
        statistics[f"{model}_wrong"] = (f"{model}_wrong", "sum")
    table = pairs.groupby(IMAGE_COLUMNS, sort=False).agg(**statistics).reset_index()
    return table.assign(score_gap=table[f"{model_b}_mean"] - table[f"{model_a}_mean"])


def both_wrong(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """Up to ``n`` images both models got wrong in the most replicates (ties: the larger error of the mean scores)."""
    wrong = table[table["both_wrong"] > 0]
    error = wrong.filter(regex="_mean$").sub(wrong["target"], axis=0).abs().mean(axis=1)
    return wrong.assign(error=error).sort_values(["both_wrong", "error"], ascending=False).head(n).drop(columns="error")


def most_disagreed(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` images whose mean scores differ most between the two models (either direction)."""
    return table.loc[table["score_gap"].abs().sort_values(ascending=False).index[:n]]
