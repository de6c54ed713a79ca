"""Notebook 04's factorial section, for a study whose plan is factorial (docs/FACTORIAL.md): the answer in one
sentence first, then the table of cells, every contrast with its intervals and decision, the replicates in one
figure, where and how long each cell trained, and every expectation, met or not. Writes factorial.json (and the
figure) for the index."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from cxrlib import factorial, plan, plots, runtime
from cxrlib.backbones import title_of
from cxrlib.contract import FACTORIAL_CELLS_FILE, FACTORIAL_FIGURE, FACTORIAL_FILE
from cxrlib.files import write_atomic
from cxrlib.report.discussion import signed
from cxrlib.report.format import NAMES, POLICY_NAMES, mean_sd_range, number, p_value, readable, table_record

SMALL_ENOUGH = 0.005  # the plan's "any difference is smaller than 0.005" bound for an undecided primary
RULES = {"primary": "95% t-interval", "bonferroni": "Bonferroni interval"}


def contrast_title(contrast: plan.Contrast) -> str:
    """A contrast as a reader names it: 'architecture at T: DenseNet-121 − ResNet-50', 'recipe for ResNet-50:
    T − S', 'interaction', or its cells with their signs."""
    cells = [(cell.split("/"), weight) for cell, weight in contrast.terms.items()]
    plus = [cell for cell, weight in cells if weight > 0]
    minus = [cell for cell, weight in cells if weight < 0]
    if len(cells) == 2 and plus[0][1] == minus[0][1]:
        return f"architecture at {plus[0][1]}: {title_of(plus[0][0])} − {title_of(minus[0][0])}"
    if len(cells) == 2 and plus[0][0] == minus[0][0]:
        return f"recipe for {title_of(plus[0][0])}: {plus[0][1]} − {minus[0][1]}"
    if len(cells) == 2:
        return f"{title_of(plus[0][0])} at {plus[0][1]} − {title_of(minus[0][0])} at {minus[0][1]}"
    if len(cells) == 4 and all(abs(weight) == 1 for _, weight in cells):
        return "interaction: (architecture at one recipe) − (at the other)"
    return " ".join(f"{weight:+g}·{title_of(arch)} at {recipe}" for (arch, recipe), weight in cells)


def _interval(row, rule: str) -> str:
    """'+0.0089 (95% t-interval +0.0016 to +0.0162)' for the rule that decides (or describes) the row."""
    low, high = (row["ci_low"], row["ci_high"]) if rule == "primary" else (row["adjusted_low"], row["adjusted_high"])
    return f"{signed(row['mean'])} ({RULES[rule]} {signed(low)} to {signed(high)})"


def answer(factorial_plan: plan.FactorialPlan, summary: pd.DataFrame) -> tuple[str, str]:
    """The study's answer in one sentence ("At equal recipes, ...") and the sentences behind it, by the plan's rule:
    the primary decides the first half; the recipe contrast of the architecture the already-decided contrast
    favoured (e.g. DenseNet-121's T − S) attributes that advantage; a decided interaction is named."""
    rows = summary.set_index(["contrast", "metric"])
    contrasts = {c.name: c for c in factorial_plan.contrasts}
    primary = next(c for c in factorial_plan.contrasts if c.role == "primary")
    row = rows.loc[(primary.name, factorial_plan.primary_metric)]
    better, other = ([c.split("/")[0] for c, w in primary.terms.items() if w > 0][0],
                     [c.split("/")[0] for c, w in primary.terms.items() if w < 0][0])
    recipe = next(iter(primary.terms)).split("/")[1]
    metric = NAMES[factorial_plan.primary_metric]
    shown = _interval(row, "primary")
    if row["decided"] == "above":
        lead = f"At equal recipes ({recipe}), {title_of(better)} has the higher {metric}: {shown}"
    elif row["decided"] == "below":
        lead = f"At equal recipes ({recipe}), {title_of(other)} has the higher {metric}: {shown}"
    else:
        size = (f"any difference at {recipe} is smaller than {SMALL_ENOUGH} in {metric}"
                if -SMALL_ENOUGH <= row["ci_low"] and row["ci_high"] <= SMALL_ENOUGH
                else "the study was too small to tell a difference of that size")
        lead = (f"At equal recipes ({recipe}), the study detects no difference between the architectures in {metric}: "
                f"{shown}; {size}")
    details = []
    decided = next((c for c in factorial_plan.contrasts if c.role == "decided"), None)
    if decided is not None:
        favoured = [c for c, w in decided.terms.items() if w > 0][0].split("/")[0]
        recipe_effect = next((c for c in factorial_plan.contrasts if c.role == "secondary" and len(c.terms) == 2
                              and {cell.split("/")[0] for cell in c.terms} == {favoured}), None)
        if recipe_effect is not None:
            effect = rows.loc[(recipe_effect.name, factorial_plan.primary_metric)]
            verdict = {"above": "the recipe contributes to", "below": "the recipe works against",
                       "not detected": "the study cannot attribute to the recipe"}[effect["decided"]]
            details.append(f"{contrast_title(recipe_effect)} {_interval(effect, 'bonferroni')}: {verdict} "
                           f"{title_of(favoured)}'s advantage in the already-decided contrast "
                           f"({contrast_title(decided)})")
    for name, contrast in contrasts.items():
        if len(contrast.terms) == 4 and rows.loc[(name, factorial_plan.primary_metric), "decided"] in ("above", "below"):
            details.append(f"the architectures respond to the recipe differently ({contrast_title(contrast)} "
                           f"{_interval(rows.loc[(name, factorial_plan.primary_metric)], 'bonferroni')})")
    rule = (f"The rule, fixed in {factorial_plan.document} before the new cells ran: the primary is decided by its "
            f"{factorial_plan.level:.0%} t-interval, each of the {len(factorial.secondary_family(factorial_plan))} "
            f"secondary (contrast, metric) pairs by its Bonferroni interval (level "
            f"{factorial.adjusted_level(factorial_plan):.5f}); a model is better only when the interval excludes 0.")
    text = "; ".join(details)
    return f"{lead}.", (f"{text[0].upper() + text[1:]}. " if text else "") + rule


def cell_table(factorial_plan: plan.FactorialPlan, cell_summary: pd.DataFrame, per_cell: pd.DataFrame) -> pd.DataFrame:
    """The cells as rows (architecture, recipe, who holds the cell) with mean ± SD (min–max) of each metric."""
    rows = []
    for (arch, recipe), group in cell_summary.groupby(["arch", "recipe"], sort=False):
        stats = group.set_index("metric")
        holder = factorial_plan.cells[arch][recipe]
        rows.append({"model": title_of(arch), "recipe": f"{recipe}: {factorial_plan.recipes[recipe]}",
                     "records": "new" if holder == factorial_plan.name else f"committed ({holder})",
                     "replicates": int(stats["n"].iloc[0]),
                     **{NAMES[m]: mean_sd_range(*stats.loc[m, ["mean", "sd", "min", "max"]]) for m in stats.index}})
    return pd.DataFrame(rows)


def contrast_table(factorial_plan: plan.FactorialPlan, summary: pd.DataFrame) -> pd.DataFrame:
    """Every contrast and metric: mean, both intervals, replicates above/below 0, the tests, and the decision."""
    titles = {c.name: contrast_title(c) for c in factorial_plan.contrasts}
    words = {"above": "detected, above 0", "below": "detected, below 0", "not detected": "not detected",
             "": "decided by its own study; restated"}
    return pd.DataFrame({
        "contrast": summary["contrast"].map(titles), "role": summary["role"], "metric": summary["metric"].map(NAMES),
        "mean": [signed(value) for value in summary["mean"]],
        "95% t-interval": [f"{signed(lo)} to {signed(hi)}" for lo, hi in zip(summary["ci_low"], summary["ci_high"])],
        "Bonferroni interval": [f"{signed(lo)} to {signed(hi)}"
                                for lo, hi in zip(summary["adjusted_low"], summary["adjusted_high"])],
        "above / below 0": [f"{a} / {b}" for a, b in zip(summary["n_above"], summary["n_below"])],
        "sign test p": summary["sign_test_p"].map(p_value), "Wilcoxon p": summary["wilcoxon_p"].map(p_value),
        "decision": [f"{words[d]} ({RULES[by]})" if by else words[d]
                     for d, by in zip(summary["decided"], summary["decided_by"])],
    })


def costs_table(per_cell: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the CPU kinds its replicates trained on and the training time (wall minutes) across them."""
    rows = []
    for (arch, recipe), group in per_cell.groupby(["arch", "recipe"], sort=False):
        kinds = group["cpu"].value_counts()
        minutes = group["training_minutes"]
        rows.append({"model": title_of(arch), "recipe": recipe,
                     "CPU (replicates)": "; ".join(f"{kind} ({count})" for kind, count in kinds.items()),
                     "training minutes, mean (min–max)": f"{minutes.mean():.1f} ({minutes.min():.1f}–{minutes.max():.1f})",
                     "training minutes, total": f"{minutes.sum():.0f}"})
    return pd.DataFrame(rows)


def expectation_table(results: pd.DataFrame, factorial_plan: plan.FactorialPlan) -> pd.DataFrame:
    """``factorial.expectation_results`` for readers: what was expected in advance, what was measured, met or not."""
    titles = {c.name: contrast_title(c) for c in factorial_plan.contrasts}
    statistic = {"mean": "mean", "sd": "SD", "min": "smallest", "max": "largest",
                 "half_width": f"half-width of the {factorial_plan.level:.0%} interval of"}
    sign = {"at_least": "≥", "at_most": "≤"}

    def subject(of: str) -> str:
        """A cell ('ResNet-50 at T') or a contrast's title."""
        return titles[of] if of in titles else f"{title_of(of.split('/')[0])} at {of.split('/')[1]}"

    return pd.DataFrame({
        "expected in advance": [f"{statistic[r.statistic]} {NAMES[r.metric]} of {subject(r.of)} {sign[r.bound]} "
                                f"{r.value:g}" for r in results.itertuples()],
        "measured": [number(value, 4) for value in results["measured"]],
        "met": results["met"].map({True: "yes", False: "no"}),
    })


def section(params: dict, images: pd.DataFrame, data_root: Path | None, **policy_kwargs) -> dict | None:
    """The whole factorial section when ``params['study']`` names a factorial plan (else nothing: returns None);
    writes factorial.json and the figure into the report directory and returns the record."""
    report_dir = Path(params["report_dir"])
    if not params["study"] or plan.plan_kind(params["study"]) != "factorial":
        for stale in (FACTORIAL_FILE, FACTORIAL_FIGURE, FACTORIAL_CELLS_FILE):  # an earlier factorial must not outlive its records
            (report_dir / stale).unlink(missing_ok=True)
        return None
    factorial_plan = plan.load_factorial(params["study"])
    cells = factorial.load_cells(factorial_plan, images, data_root)
    per_cell = factorial.cell_metrics(cells, factorial_plan.primary_policy, **policy_kwargs)
    cell_summary = factorial.summarise_cells(per_cell)
    values = factorial.contrast_values(per_cell, factorial_plan)
    summary = factorial.summarise_contrasts(values, factorial_plan)
    lead, details = answer(factorial_plan, summary)
    display(Markdown(f"## {factorial_plan.title}\n\n**{lead}** {details}"))
    cells_shown = cell_table(factorial_plan, cell_summary, per_cell)
    display(Markdown(f"**The cells**: test set, {POLICY_NAMES[factorial_plan.primary_policy]}, each cell mean ± SD "
                     "(smallest–largest) across the replicates; byte-identical test images count once."))
    display(readable(cells_shown))
    contrasts_shown = contrast_table(factorial_plan, summary)
    display(Markdown("**The contrasts**, per replicate, then across the replicates (t-intervals with "
                     f"{len(factorial_plan.seeds) - 1} degrees of freedom):"))
    display(readable(contrasts_shown))
    titles = {c.name: contrast_title(c).split(":")[0] for c in factorial_plan.contrasts}
    display(plots.plot_factorial(per_cell, values, summary, titles, factorial_plan.decision_metrics, NAMES,
                                 save_to=report_dir / FACTORIAL_FIGURE))
    costs = costs_table(per_cell)
    kinds = factorial.cpu_kinds(per_cell)
    display(Markdown(f"**Where and how long each cell trained** (wall minutes from each run.json; replicates whose four "
                     f"cells share one CPU kind: {int(kinds['one_kind'].sum())} of {len(kinds)}):"))
    display(readable(costs))
    expectations = expectation_table(factorial.expectation_results(factorial_plan, cell_summary, summary),
                                     factorial_plan)
    display(Markdown("**Expected in advance** (the plan's list, each reported met or not):"))
    display(readable(expectations))
    record = {"title": factorial_plan.title, "kind": "factorial", "plan": f"studies/{factorial_plan.name}.yaml",
              "document": factorial_plan.document, "document_added": runtime.adding_commit(factorial_plan.document),
              "seeds": list(factorial_plan.seeds), "policy": POLICY_NAMES[factorial_plan.primary_policy],
              "answer": lead, "answer_details": details, "figure": FACTORIAL_FIGURE,
              "cells": table_record(cells_shown), "contrasts": table_record(contrasts_shown),
              "costs": table_record(costs), "expectations": table_record(expectations)}
    write_atomic(report_dir / FACTORIAL_FILE, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    write_atomic(report_dir / FACTORIAL_CELLS_FILE, lambda partial: per_cell.to_csv(partial, index=False))
    return record
