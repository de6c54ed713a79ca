"""Seed-level aggregation: how much of a difference between models survives retraining with another seed.

Input: ``compare.Run`` objects for any number of models x replicate seeds (e.g. ``runs/<arch>/seed-<k>/``).
A run's model is its ``arch`` (an ensemble's ``name``); its seed is ``run.seed`` (run.json's ``seed``).
Every threshold is chosen on that run's own validation rows; test rows are only scored. Merge byte-identical
test images first (``compare.merge_duplicates``) if they should count once.
With one seed, SDs, t-intervals and tests are NaN in the frames; the report layer renders them (e.g. "–").
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest, t, ttest_ind, wilcoxon

from cxrlib import compare, evaluate
from cxrlib.contract import ENSEMBLE, HEADLINE_METRICS, THRESHOLD_POLICIES, model_of

DIFFERENCE_METRICS = ("roc_auc", "accuracy")
TIE_TOLERANCE = 1e-12  # per-seed differences this close to 0 are ties (float noise), dropped by both tests
RANK_DECIMALS = 12  # differences are rounded to this many decimals before ranking, so float noise cannot break ties


def seed_of(run: compare.Run) -> int:
    """The replicate seed of a run (``run.seed``, from run.json); error if it has none."""
    if run.seed is None:
        raise ValueError(f"run {run.name!r} records no seed (run.json 'seed'); retrain it with cxrlib.train")
    return int(run.seed)


def runs_by_seed(runs: Sequence[compare.Run]) -> dict[int, list[compare.Run]]:
    """The runs grouped by seed (ascending); error if one model appears twice for a seed."""
    grouped = defaultdict(list)
    for run in runs:
        grouped[seed_of(run)].append(run)
    for seed, seed_runs in grouped.items():
        models = [model_of(run.arch, run.name) for run in seed_runs]
        repeated = sorted({model for model in models if models.count(model) > 1})
        if repeated:
            raise ValueError(f"seed {seed} has more than one run of {repeated}; give one run per model and seed")
    return dict(sorted(grouped.items()))


def add_seed_ensembles(runs: Sequence[compare.Run], members: Sequence[str] | None = None, method: str = "mean",
                       name: str = ENSEMBLE) -> list[compare.Run]:
    """The runs plus, per seed, the ensemble (``compare.make_ensemble``) of that seed's ``members`` models
    (default: every model of the seed), its seed in ``info["seed"]``; seeds with fewer than two members get none."""
    ensembles = []
    for seed, seed_runs in runs_by_seed(runs).items():
        chosen = [run for run in seed_runs if members is None or model_of(run.arch, run.name) in members]
        if len(chosen) >= 2:
            ensemble = compare.make_ensemble(chosen, method=method, name=name)
            ensemble.info["seed"] = seed
            ensembles.append(ensemble)
    return [*runs, *ensembles]


def seed_metrics(runs: Sequence[compare.Run], primary: str, policies: Sequence[str] = THRESHOLD_POLICIES,
                 **policy_kwargs) -> pd.DataFrame:
    """One row per model, seed and policy: the threshold the policy picks on the run's validation rows and the
    test ROC-AUC, accuracy, sensitivity and specificity at it.

    ``primary`` is the headline policy (``is_primary``); the others form the sensitivity analysis.
    ``policy_kwargs`` (target_sensitivity, delta, fixed_threshold) go to ``evaluate.policy_thresholds``.
    Columns: model, seed, policy, is_primary, threshold, roc_auc, accuracy, sensitivity, specificity, n_val, n_test.
    """
    if primary not in policies:
        raise ValueError(f"primary policy {primary!r} is not among the policies {tuple(policies)}; add it")
    ordered = [primary, *(policy for policy in policies if policy != primary)]
    rows = []
    for seed, seed_runs in runs_by_seed(runs).items():
        for run in seed_runs:
            val, test = run.val, run.test
            thresholds = evaluate.policy_thresholds(val["target"], val["prob"], ordered, **policy_kwargs)
            for policy, threshold in thresholds.items():
                scores = evaluate.compute_metrics(test["target"], test["prob"], threshold)
                rows.append({"model": model_of(run.arch, run.name), "seed": seed, "policy": policy, "is_primary": policy == primary,
                             "threshold": threshold, **{name: scores[name] for name in HEADLINE_METRICS},
                             "n_val": len(val), "n_test": len(test)})
    return pd.DataFrame(rows)


def summarise_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Across seeds, per model, policy and metric (threshold included): n_seeds, mean, sd (ddof 1; NaN with
    one seed), min and max. Columns: model, policy, is_primary, metric, n_seeds, mean, sd, min, max."""
    long = per_seed.melt(id_vars=["model", "policy", "is_primary", "seed"], value_vars=["threshold", *HEADLINE_METRICS],
                         var_name="metric")
    grouped = long.groupby(["model", "policy", "is_primary", "metric"], sort=False)["value"]
    return grouped.agg(n_seeds="count", mean="mean", sd="std", min="min", max="max").reset_index()


def seed_differences(per_seed: pd.DataFrame, reference: str, policy: str, models: Sequence[str] | None = None,
                     metrics: Sequence[str] = DIFFERENCE_METRICS) -> pd.DataFrame:
    """Per seed, each model's test metric minus the ``reference`` model's (same seed, same ``policy``).

    ``models`` defaults to every model but the reference; only seeds where both models have a run count.
    Columns: model, reference, policy, metric, seed, value, reference_value, difference.
    """
    at_policy = per_seed[per_seed["policy"] == policy]
    available = list(dict.fromkeys(at_policy["model"]))
    if reference not in available or (models is not None and set(models) - set(available)):
        raise ValueError(f"models {[reference, *(models or [])]} at policy {policy!r} are not all among the "
                         f"per-seed rows' models {available}; name models that were evaluated")
    rows = []
    for model in models or [name for name in available if name != reference]:
        paired = at_policy[at_policy["model"] == model].merge(at_policy[at_policy["model"] == reference], on="seed",
                                                              suffixes=("", "_reference"))
        for metric in metrics:
            rows.append(pd.DataFrame({"model": model, "reference": reference, "policy": policy, "metric": metric,
                                      "seed": paired["seed"], "value": paired[metric],
                                      "reference_value": paired[f"{metric}_reference"],
                                      "difference": paired[metric] - paired[f"{metric}_reference"]}))
    return pd.concat(rows, ignore_index=True)


def wilcoxon_signed_rank(differences: pd.Series) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank p-value of per-seed differences and the smallest p attainable with them.

    Differences within ``TIE_TOLERANCE`` of 0 are dropped first (scipy's ``zero_method="wilcox"``: zeros carry
    no rank), the rest are rounded to ``RANK_DECIMALS`` so that equal magnitudes share their mid-rank. scipy's
    ``method="auto"`` then gives the exact null distribution when no magnitudes tie, an exhaustive permutation
    test (exact given the tied mid-ranks) when some do and at most 13 remain, and the normal approximation
    beyond. With n non-zero differences the smallest attainable p is 2 / 2**n (all n of one sign).
    Both are NaN with fewer than two seeds or no non-zero difference.
    """
    nonzero = differences[differences.abs() > TIE_TOLERANCE].round(RANK_DECIMALS)
    if len(differences) < 2 or nonzero.empty:
        return np.nan, np.nan
    result = wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided", method="auto")
    return float(result.pvalue), 2 * 0.5 ** len(nonzero)


def summarise_differences(differences: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean per-seed difference with a ``level`` t-interval across seeds, an exact two-sided sign test and the
    two-sided Wilcoxon signed-rank test (``wilcoxon_signed_rank``), as docs/PREREGISTRATION.md specifies.

    The sign test counts seeds where the model beats the reference (ties, within ``TIE_TOLERANCE``, dropped);
    with n untied seeds the smallest attainable p-value of either test is 2 / 2**n (``min_attainable_p``,
    ``wilcoxon_min_attainable_p``), so fewer than 6 seeds can never reach p < 0.05 (5 seeds: 0.0625; 3 seeds:
    0.25). Columns: model, reference, policy, metric, n_seeds, mean_difference, sd_difference, ci_low, ci_high,
    n_model_better, n_reference_better, sign_test_p, min_attainable_p, wilcoxon_p, wilcoxon_min_attainable_p.
    With one seed sd_difference, ci_low, ci_high and both Wilcoxon columns are NaN; with no untied seed the sign
    test's p is 1 and the Wilcoxon columns are NaN.
    """
    rows = []
    for (model, reference, policy, metric), group in differences.groupby(["model", "reference", "policy", "metric"],
                                                                         sort=False):
        values = group["difference"]
        n_seeds, mean, sd = len(values), values.mean(), values.std()  # sd: ddof 1, NaN for one seed
        half_width = t.ppf(0.5 + level / 2, n_seeds - 1) * sd / np.sqrt(n_seeds)  # t with 0 df: NaN
        better, worse = int((values > TIE_TOLERANCE).sum()), int((values < -TIE_TOLERANCE).sum())
        rows.append({"model": model, "reference": reference, "policy": policy, "metric": metric, "n_seeds": n_seeds,
                     "mean_difference": mean, "sd_difference": sd, "ci_low": mean - half_width,
                     "ci_high": mean + half_width, "n_model_better": better, "n_reference_better": worse,
                     "sign_test_p": binomtest(better, better + worse).pvalue if better + worse else 1.0,
                     "min_attainable_p": min(1.0, 2 * 0.5 ** (better + worse))}
                    | dict(zip(("wilcoxon_p", "wilcoxon_min_attainable_p"), wilcoxon_signed_rank(values))))
    return pd.DataFrame(rows)


def between_studies(per_seed: pd.DataFrame, earlier_per_seed: pd.DataFrame,
                    metrics: Sequence[str] = DIFFERENCE_METRICS, level: float = 0.95) -> pd.DataFrame:
    """Per model in both studies and metric, at each study's primary policy: each study's replicates, mean and SD,
    and the difference of means (this study − the earlier one) with a Welch ``level`` interval; the replicates of
    two studies are independent draws, not pairs. With one replicate in a study, SD and interval are NaN.
    Columns: model, metric, n, mean, sd, earlier_n, earlier_mean, earlier_sd, difference, ci_low, ci_high."""
    this, earlier = (frame[frame["is_primary"]] for frame in (per_seed, earlier_per_seed))
    rows = []
    for model in [model for model in this["model"].unique() if model in set(earlier["model"])]:
        for metric in metrics:
            values, earlier_values = (frame.loc[frame["model"] == model, metric].to_numpy(float)
                                      for frame in (this, earlier))
            spread = min(len(values), len(earlier_values)) > 1
            low, high = (ttest_ind(values, earlier_values, equal_var=False).confidence_interval(level) if spread
                         else (np.nan, np.nan))
            rows.append({"model": model, "metric": metric, "n": len(values), "mean": values.mean(),
                         "sd": pd.Series(values).std(), "earlier_n": len(earlier_values),
                         "earlier_mean": earlier_values.mean(), "earlier_sd": pd.Series(earlier_values).std(),
                         "difference": values.mean() - earlier_values.mean(), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def seed_study(runs: Sequence[compare.Run], primary: str, reference: str, policies: Sequence[str] = THRESHOLD_POLICIES,
               ensemble_members: Sequence[str] | None = None, level: float = 0.95,
               **policy_kwargs) -> dict[str, pd.DataFrame]:
    """Every seed-level table at once: ``per_seed``, ``summary``, ``differences`` and ``difference_summary``.

    A per-seed mean-probability ensemble of ``ensemble_members`` (default all models) is added as a model;
    differences are every other model minus ``reference`` at the ``primary`` policy.
    """
    per_seed = seed_metrics(add_seed_ensembles(runs, ensemble_members), primary, policies, **policy_kwargs)
    differences = seed_differences(per_seed, reference, primary)
    return {"per_seed": per_seed, "summary": summarise_seeds(per_seed), "differences": differences,
            "difference_summary": summarise_differences(differences, level)}
