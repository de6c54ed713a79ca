"""A factorial study's analysis (``plan.FactorialPlan``): every architecture at every recipe on one set of splits,
judged by the plan's contrasts.

Each cell's runs are read from the records of the study that holds it (``plan.cells``); a cell must hold exactly
the plan's seeds, so nothing of a cell is scored before every replicate is committed (the plan forbids an interim
look). Per run, the test metrics at the primary policy are ``study.seed_metrics``'s, so a cell that another study
holds scores exactly as that study's report scored it. A contrast's per-replicate value is the sum of coefficient
× cell metric; its 95% t-interval decides the primary, and the secondary family is decided by Bonferroni
intervals (``docs/FACTORIAL.md``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib import compare, plan, study
from cxrlib.contract import REPO_ROOT

FAMILY_ALPHA = 0.05  # the secondary family's error rate, split equally (Bonferroni) over its members
CELL_COLUMNS = ["arch", "recipe", "seed", "threshold", "roc_auc", "accuracy", "sensitivity", "specificity", "n_test",
                "cpu", "training_minutes"]


def cell_name(arch: str, recipe: str) -> str:
    """The name a plan's contrasts use for a cell: ``densenet121/T``."""
    return f"{arch}/{recipe}"


def cell_records(factorial: plan.FactorialPlan, root: Path | None = None) -> dict[tuple[str, str], Path]:
    """(arch, recipe) -> the committed records folder of the study that holds that cell (under ``root``, default
    the repository)."""
    root = REPO_ROOT if root is None else root
    holders = {name: factorial.records if name == factorial.name else plan.load_plan(name).records
               for row in factorial.cells.values() for name in row.values()}
    return {(arch, recipe): root / holders[holder] for arch, row in factorial.cells.items()
            for recipe, holder in row.items()}


def load_cells(factorial: plan.FactorialPlan, images: pd.DataFrame, data_root: Path | None = None,
               root: Path | None = None) -> dict[tuple[str, str], list[compare.Run]]:
    """Every cell's runs (byte-identical test images merged), checked: each cell holds exactly the plan's seeds, all
    runs share the data, and the four runs of a replicate share its patient split (split fingerprint)."""
    cells, loaded = {}, {}
    for (arch, recipe), records in cell_records(factorial, root).items():
        if records not in loaded:
            loaded[records] = compare.merge_duplicates(compare.load_runs(records, data_root), images)[0]
        runs = sorted((run for run in loaded[records] if run.arch == arch), key=study.seed_of)
        seeds = [study.seed_of(run) for run in runs]
        if sorted(seeds) != sorted(factorial.seeds):
            missing = sorted(set(factorial.seeds) - set(seeds))
            raise ValueError(f"cell {cell_name(arch, recipe)} ({records}) holds seeds {seeds}, not the plan's "
                             f"{list(factorial.seeds)} (missing: {missing}); the factorial study is read only when "
                             f"every replicate is committed: scripts/run_planned_study.sh {factorial.name}")
        cells[(arch, recipe)] = runs
    every_run = [run for runs in cells.values() for run in runs]
    if len({run.info.get("data_fingerprint") for run in every_run}) > 1:
        raise ValueError("the cells of the factorial study were trained on different data (data fingerprints "
                         "differ); every cell must come from the same copy of the data set")
    for seed in factorial.seeds:
        splits = {cell_name(*key): next(run for run in runs if run.seed == seed).info.get("split_fingerprint")
                  for key, runs in cells.items()}
        if len(set(splits.values())) > 1:
            raise ValueError(f"replicate {seed} of the factorial study used different patient splits in its cells "
                             f"(split fingerprints {splits}); every cell of a replicate must share its split")
    return cells


def cell_metrics(cells: dict[tuple[str, str], list[compare.Run]], policy: str, **policy_kwargs) -> pd.DataFrame:
    """One row per cell and replicate: the test metrics at ``policy`` (chosen on the run's validation rows), the
    CPU the run trained on and its training time. Columns: CELL_COLUMNS."""
    frames = []
    for (arch, recipe), runs in cells.items():
        metrics = study.seed_metrics(runs, policy, (policy,), **policy_kwargs)
        costs = pd.DataFrame({"seed": [run.seed for run in runs],
                              "cpu": [run.cpu for run in runs],
                              "training_minutes": [run.info["timing"]["training"] / 60 for run in runs]})
        frames.append(metrics.assign(arch=arch, recipe=recipe).merge(costs, on="seed"))
    return pd.concat(frames, ignore_index=True)[CELL_COLUMNS].sort_values(["seed", "arch", "recipe"],
                                                                          ignore_index=True)


def summarise_cells(per_cell: pd.DataFrame, metrics=("roc_auc", "accuracy", "sensitivity", "specificity")
                    ) -> pd.DataFrame:
    """Per cell and metric across replicates: n, mean, sd (ddof 1), min, max. Columns: arch, recipe, metric, n,
    mean, sd, min, max."""
    long = per_cell.melt(id_vars=["arch", "recipe", "seed"], value_vars=list(metrics), var_name="metric")
    grouped = long.groupby(["arch", "recipe", "metric"], sort=False)["value"]
    return grouped.agg(n="count", mean="mean", sd="std", min="min", max="max").reset_index()


def contrast_values(per_cell: pd.DataFrame, factorial: plan.FactorialPlan) -> pd.DataFrame:
    """Per contrast, metric and replicate: the sum of coefficient × cell metric. Columns: contrast, role, metric,
    seed, difference."""
    wide = per_cell.assign(cell=[cell_name(a, r) for a, r in zip(per_cell["arch"], per_cell["recipe"])]).pivot(
        index="seed", columns="cell", values=list(factorial.decision_metrics))
    rows = []
    for contrast in factorial.contrasts:
        for metric in factorial.decision_metrics:
            values = sum(weight * wide[(metric, cell)] for cell, weight in contrast.terms.items())
            rows.append(pd.DataFrame({"contrast": contrast.name, "role": contrast.role, "metric": metric,
                                      "seed": values.index, "difference": values.to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def secondary_family(factorial: plan.FactorialPlan) -> list[tuple[str, str]]:
    """The (contrast, metric) pairs decided by Bonferroni intervals: every pair of a primary or secondary contrast
    except the primary contrast in the primary metric."""
    primary = next(c.name for c in factorial.contrasts if c.role == "primary")
    return [(c.name, metric) for c in factorial.contrasts if c.role in ("primary", "secondary")
            for metric in factorial.decision_metrics if (c.name, metric) != (primary, factorial.primary_metric)]


def adjusted_level(factorial: plan.FactorialPlan) -> float:
    """The Bonferroni level of each secondary interval: 1 − FAMILY_ALPHA / (the family's size)."""
    return 1 - FAMILY_ALPHA / len(secondary_family(factorial))


def summarise_contrasts(values: pd.DataFrame, factorial: plan.FactorialPlan) -> pd.DataFrame:
    """Per contrast and metric: mean, SD, the plan's t-interval, the Bonferroni interval, replicates above and below
    0, the sign and Wilcoxon tests (``study.summarise_differences``), and the decision the plan's rule gives:
    ``decided`` is 'above', 'below', 'not detected', or '' where the plan decides nothing (a contrast already
    decided by another study). Columns: contrast, role, metric, n, mean, sd, ci_low, ci_high, adjusted_low,
    adjusted_high, n_above, n_below, sign_test_p, wilcoxon_p, decided_by, decided."""
    as_differences = values.rename(columns={"contrast": "model"}).assign(reference="", policy=factorial.primary_policy)
    plain = study.summarise_differences(as_differences, factorial.level)
    adjusted = study.summarise_differences(as_differences, adjusted_level(factorial))
    summary = plain.assign(adjusted_low=adjusted["ci_low"].to_numpy(), adjusted_high=adjusted["ci_high"].to_numpy())
    summary = summary.rename(columns={"model": "contrast", "n_seeds": "n", "mean_difference": "mean",
                                      "sd_difference": "sd", "n_model_better": "n_above",
                                      "n_reference_better": "n_below"})
    roles = {c.name: c.role for c in factorial.contrasts}
    family = set(secondary_family(factorial))
    decided_by, decided = [], []
    for row in summary.itertuples():
        if (row.contrast, row.metric) in family:
            low, high, rule = row.adjusted_low, row.adjusted_high, "bonferroni"
        elif roles[row.contrast] == "primary":
            low, high, rule = row.ci_low, row.ci_high, "primary"
        else:
            decided_by.append(""), decided.append("")
            continue
        decided_by.append(rule)
        decided.append("above" if low > 0 else "below" if high < 0 else "not detected")
    summary = summary.assign(role=summary["contrast"].map(roles), decided_by=decided_by, decided=decided)
    return summary[["contrast", "role", "metric", "n", "mean", "sd", "ci_low", "ci_high", "adjusted_low",
                    "adjusted_high", "n_above", "n_below", "sign_test_p", "wilcoxon_p", "decided_by", "decided"]]


def expectation_results(factorial: plan.FactorialPlan, cell_summary: pd.DataFrame,
                        contrast_summary: pd.DataFrame) -> pd.DataFrame:
    """Each expectation the plan stated in advance with its measured value and whether it was met.
    Columns: of, metric, statistic, bound, value, measured, met."""
    cells = cell_summary.assign(of=[cell_name(a, r) for a, r in zip(cell_summary["arch"], cell_summary["recipe"])])
    cells = cells.set_index(["of", "metric"])
    contrasts = contrast_summary.assign(half_width=(contrast_summary["ci_high"] - contrast_summary["ci_low"]) / 2,
                                        min=np.nan, max=np.nan)
    contrasts = contrasts.rename(columns={"contrast": "of"}).set_index(["of", "metric"])
    rows = []
    for expectation in factorial.expectations:
        table = cells if (expectation["of"], expectation["metric"]) in cells.index else contrasts
        measured = float(table.loc[(expectation["of"], expectation["metric"]), expectation["statistic"]])
        holds = plan.Expectation("", expectation["metric"], expectation["statistic"], expectation["bound"],
                                 float(expectation["value"])).holds(measured)
        rows.append({**expectation, "measured": measured, "met": holds})
    return pd.DataFrame(rows, columns=["of", "metric", "statistic", "bound", "value", "measured", "met"])


def cpu_kinds(per_cell: pd.DataFrame) -> pd.DataFrame:
    """Per replicate, the CPU each cell trained on (a column per cell) and whether all four share one kind."""
    table = per_cell.assign(cell=[cell_name(a, r) for a, r in zip(per_cell["arch"], per_cell["recipe"])]).pivot(
        index="seed", columns="cell", values="cpu")
    return table.assign(one_kind=table.nunique(axis=1) == 1).reset_index()
