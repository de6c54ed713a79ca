"""A study's plan as data (``studies/<name>.yaml``): which replicates it covers, its primary policy, its decision
rule and the results it expected, so that the comparison report and the index state the decision and every
expectation, met or not, from the plan rather than from prose.

The plan itself is a committed document (``document``, e.g. docs/PREREGISTRATION.md); the yaml file transcribes
what the reports need from it and is checked like a profile (errors name the file, the key and the fix).
"""
from __future__ import annotations

import difflib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrlib.contract import (ARCHS, ENSEMBLE, HEADLINE_METRICS, RECORDS_DIR, REPO_ROOT, STUDIES_DIR,
                             THRESHOLD_POLICIES, repo_relative)
from cxrlib.yaml_files import read_mapping

KINDS = ("exploratory", "confirmatory")  # a two-model study (StudyPlan); a factorial study is FactorialPlan
STATISTICS = ("mean", "sd", "min", "max")
DIFFERENCE_STATISTICS = ("half_width",)  # of the plan's interval for the paired difference compared − reference
BOUNDS = {"at_least": ">=", "at_most": "<="}
KEYS = ("title", "kind", "document", "profile", "records", "seeds", "primary_policy", "reference", "compared",
        "decision_metrics", "level", "focus_seed", "expectations")
OPTIONAL_KEYS = ("beside",)  # beside: an earlier study (its plan's name) the reports show next to this one, not pooled


class PlanError(ValueError):
    """A study plan file is invalid; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Expectation:
    """One result stated in advance: ``statistic`` of ``metric`` across replicates for ``model``, bounded; with
    ``half_width`` the statistic is of the paired difference ``model`` − reference (its interval's half-width)."""

    model: str
    metric: str
    statistic: str
    bound: str  # at_least or at_most
    value: float

    def holds(self, measured: float) -> bool:
        """Whether a measured value meets the expectation."""
        return measured >= self.value if self.bound == "at_least" else measured <= self.value


@dataclass(frozen=True)
class StudyPlan:
    """What the reports need from a committed study plan."""

    name: str
    title: str
    kind: str  # exploratory or confirmatory
    document: str  # the plan's text, relative to the repository
    profile: str
    records: str  # the replicates' committed records (reports/<profile>/runs), relative to the repository
    seeds: tuple[int, ...]
    primary_policy: str
    reference: str  # the model the difference is taken against (compared − reference)
    compared: str
    decision_metrics: tuple[str, ...]
    level: float
    focus_seed: int
    expectations: tuple[Expectation, ...]
    beside: str | None = None  # an earlier study shown next to this one (tuned vs shared recipe), never pooled


def plan_path(name: str) -> Path:
    """studies/<name>.yaml."""
    return Path(STUDIES_DIR) / f"{name}.yaml"


def _read_plan_file(name: str) -> tuple[dict, str]:
    """The mapping in studies/<name>.yaml and the file's repository-relative name; PlanError when unreadable."""
    path = plan_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))
        raise PlanError(f"no study plan {repo_relative(path)}; set `study` to one of {known} or null")
    return read_mapping(path, "study facts (title, kind, ...)", PlanError), repo_relative(path)


def plan_kind(name: str) -> str:
    """The `kind` of studies/<name>.yaml (exploratory, confirmatory or factorial)."""
    return str(_read_plan_file(name)[0].get("kind"))


def _check_keys(values: dict, keys: tuple, optional: tuple, where: str) -> None:
    """PlanError naming unknown keys (with the closest known one) and missing keys."""
    unknown, missing = set(values) - set(keys) - set(optional), [key for key in keys if key not in values]
    if unknown or missing:
        hints = [f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
            key, keys + optional, n=1)) else "") for key in sorted(unknown)] + [f"missing key {key!r}" for key in missing]
        raise PlanError(f"{where}: {'; '.join(hints)}")


def _check_common(values: dict, where: str) -> None:
    """The checks every plan kind shares: seeds, primary policy, decision metrics, level, focus seed, document and
    where the records are."""
    seeds = values["seeds"]
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            and len(set(seeds)) == len(seeds)):
        raise PlanError(f"{where}: seeds = {seeds!r} must be a list of distinct integers")
    if values["primary_policy"] not in THRESHOLD_POLICIES:
        raise PlanError(f"{where}: primary_policy = {values['primary_policy']!r} is not one of "
                        f"{', '.join(THRESHOLD_POLICIES)}")
    if not set(values["decision_metrics"] or ()) <= set(HEADLINE_METRICS) or not values["decision_metrics"]:
        raise PlanError(f"{where}: decision_metrics = {values['decision_metrics']!r} must list some of "
                        f"{', '.join(HEADLINE_METRICS)}")
    if not isinstance(values["level"], float) or not 0.5 < values["level"] < 1:
        raise PlanError(f"{where}: level = {values['level']!r} must be a confidence level such as 0.95")
    if values["focus_seed"] not in seeds:
        raise PlanError(f"{where}: focus_seed = {values['focus_seed']!r} is not one of the seeds {seeds}")
    if not (REPO_ROOT / str(values["document"])).is_file():
        raise PlanError(f"{where}: document = {values['document']!r} does not exist in the repository; give the "
                        "plan's path relative to the repository root")
    rendered_from = f"reports/{values['profile']}/{RECORDS_DIR}"  # where notebook 04 of the plan's profile reads
    if str(values["records"]).rstrip("/") != rendered_from:
        raise PlanError(f"{where}: records = {values['records']!r} is not where ./run_all.sh --profile "
                        f"{values['profile']} --only 04 reads them; set records: {rendered_from}")


def _expectation(entry, where: str) -> Expectation:
    """One `expectations` entry, checked."""
    fields = ("model", "metric", "statistic", "bound", "value")
    if not isinstance(entry, dict) or set(entry) != set(fields):
        raise PlanError(f"{where} = {entry!r}: give exactly {', '.join(fields)}")
    models, metrics = (*ARCHS, ENSEMBLE), (*HEADLINE_METRICS, "threshold")
    statistics = STATISTICS + DIFFERENCE_STATISTICS
    for key, allowed in (("model", models), ("metric", metrics), ("statistic", statistics), ("bound", tuple(BOUNDS))):
        if entry[key] not in allowed:
            raise PlanError(f"{where}.{key} = {entry[key]!r} is not one of {', '.join(allowed)}")
    if not isinstance(entry["value"], (int, float)) or isinstance(entry["value"], bool):
        raise PlanError(f"{where}.value = {entry['value']!r} is not a number")
    return Expectation(entry["model"], entry["metric"], entry["statistic"], entry["bound"], float(entry["value"]))


def load_plan(name: str) -> StudyPlan:
    """The plan ``studies/<name>.yaml``, checked; PlanError naming the file, the key and the fix."""
    values, where = _read_plan_file(name)
    if values.get("kind") == "factorial":
        raise PlanError(f"{where} is a factorial plan; read it with cxrlib.plan.load_factorial")
    _check_keys(values, KEYS, OPTIONAL_KEYS, where)
    _check_common(values, where)
    checks = {"kind": KINDS, "reference": ARCHS, "compared": ARCHS}
    for key, allowed in checks.items():
        if values[key] not in allowed:
            raise PlanError(f"{where}: {key} = {values[key]!r} is not one of {', '.join(allowed)}")
    if values["reference"] == values["compared"]:
        raise PlanError(f"{where}: reference and compared are both {values['reference']!r}; name two architectures")
    seeds = values["seeds"]
    beside = values.get("beside")
    if beside is not None and (beside == name or not plan_path(str(beside)).is_file()):
        known = sorted(p.stem for p in STUDIES_DIR.glob("*.yaml") if p.stem != name)
        raise PlanError(f"{where}: beside = {beside!r} must name another study plan in studies/ ({known}) or be null")
    expectations = tuple(_expectation(entry, f"{where}: expectations[{i}]")
                         for i, entry in enumerate(values["expectations"] or ()))
    for i, expectation in enumerate(expectations):
        if expectation.statistic in DIFFERENCE_STATISTICS and expectation.model != values["compared"]:
            raise PlanError(f"{where}: expectations[{i}].model = {expectation.model!r}: a {expectation.statistic} "
                            f"is of the paired difference compared − reference; set model: {values['compared']}")
    return StudyPlan(name, str(values["title"]), values["kind"], str(values["document"]), str(values["profile"]),
                     str(values["records"]), tuple(seeds), values["primary_policy"], values["reference"],
                     values["compared"], tuple(values["decision_metrics"]), values["level"], values["focus_seed"],
                     expectations, beside)


FACTORIAL_KEYS = ("title", "kind", "document", "profile", "records", "seeds", "primary_policy", "recipes", "cells",
                  "contrasts", "primary_metric", "decision_metrics", "level", "adjustment", "focus_seed", "expectations")
CONTRAST_ROLES = ("primary", "secondary", "decided")  # decided: already decided by the study that holds its cells
ADJUSTMENTS = ("bonferroni",)


@dataclass(frozen=True)
class Contrast:
    """A per-replicate linear combination of cells (``{"densenet121/T": 1, "resnet50/T": -1}``) and its role."""

    name: str
    role: str
    terms: dict


@dataclass(frozen=True)
class FactorialPlan:
    """A factorial study: every architecture at every recipe on one set of splits, some cells held by other studies
    (``cells[arch][recipe]`` names the plan whose records hold the cell), judged by planned contrasts."""

    name: str
    title: str
    document: str
    profile: str  # trains this plan's own cells
    records: str
    seeds: tuple[int, ...]
    primary_policy: str
    recipes: dict  # recipe name -> its description
    cells: dict  # arch -> recipe -> plan name
    contrasts: tuple[Contrast, ...]
    primary_metric: str
    decision_metrics: tuple[str, ...]
    level: float
    adjustment: str
    focus_seed: int
    expectations: tuple[dict, ...]  # {of: cell or contrast, metric, statistic, bound, value}
    kind: str = "factorial"

    def own_archs(self) -> tuple[str, ...]:
        """The architectures whose cells this plan trains itself (the runner's models)."""
        return tuple(arch for arch in ARCHS if self.name in self.cells[arch].values())


def load_factorial(name: str) -> FactorialPlan:
    """The factorial plan ``studies/<name>.yaml``, checked; PlanError naming the file, the key and the fix."""
    values, where = _read_plan_file(name)
    _check_keys(values, FACTORIAL_KEYS, (), where)
    if values["kind"] != "factorial":
        raise PlanError(f"{where}: kind = {values['kind']!r}; load it with load_plan")
    recipes, cells = values["recipes"], values["cells"]
    if not isinstance(recipes, dict) or len(recipes) < 2:
        raise PlanError(f"{where}: recipes = {recipes!r} must map at least two recipe names to descriptions")
    if not isinstance(cells, dict) or set(cells) != set(ARCHS):
        raise PlanError(f"{where}: cells must map each of {', '.join(ARCHS)} to {{recipe: study plan}}")
    for arch, row in cells.items():
        if not isinstance(row, dict) or set(row) != set(recipes):
            raise PlanError(f"{where}: cells.{arch} = {row!r} must name a study plan for each recipe {list(recipes)}")
        for recipe, holder in row.items():
            if holder != name and not plan_path(str(holder)).is_file():
                raise PlanError(f"{where}: cells.{arch}.{recipe} = {holder!r} is not a study plan in studies/")
    cell_names = [f"{arch}/{recipe}" for arch in cells for recipe in recipes]
    contrasts = []
    for i, entry in enumerate(values["contrasts"] or ()):
        if not isinstance(entry, dict) or set(entry) != {"name", "role", "terms"}:
            raise PlanError(f"{where}: contrasts[{i}] = {entry!r}: give exactly name, role, terms")
        if entry["role"] not in CONTRAST_ROLES:
            raise PlanError(f"{where}: contrasts[{i}].role = {entry['role']!r} is not one of {', '.join(CONTRAST_ROLES)}")
        terms = entry["terms"]
        if not isinstance(terms, dict) or not set(terms) <= set(cell_names) or sum(terms.values()) != 0:
            raise PlanError(f"{where}: contrasts[{i}].terms = {terms!r} must weigh cells of {cell_names} with "
                            "coefficients that sum to 0")
        contrasts.append(Contrast(str(entry["name"]), entry["role"], dict(terms)))
    if [c.role for c in contrasts].count("primary") != 1:
        raise PlanError(f"{where}: contrasts must hold exactly one with role: primary")
    _check_common(values, where)
    for key, allowed in {"primary_metric": HEADLINE_METRICS, "adjustment": ADJUSTMENTS}.items():
        if values[key] not in allowed:
            raise PlanError(f"{where}: {key} = {values[key]!r} is not one of {', '.join(allowed)}")
    seeds = values["seeds"]
    targets = set(cell_names) | {c.name for c in contrasts}
    fields = {"of", "metric", "statistic", "bound", "value"}
    for i, entry in enumerate(values["expectations"] or ()):
        if (not isinstance(entry, dict) or set(entry) != fields or entry["of"] not in targets
                or entry["metric"] not in HEADLINE_METRICS or entry["bound"] not in BOUNDS
                or entry["statistic"] not in STATISTICS + DIFFERENCE_STATISTICS):
            raise PlanError(f"{where}: expectations[{i}] = {entry!r}: give of (one of {sorted(targets)}), metric, "
                            f"statistic ({', '.join(STATISTICS + DIFFERENCE_STATISTICS)}), bound "
                            f"({', '.join(BOUNDS)}) and value")
    return FactorialPlan(name, str(values["title"]), str(values["document"]), str(values["profile"]),
                         str(values["records"]), tuple(seeds), values["primary_policy"], dict(recipes),
                         {arch: dict(row) for arch, row in cells.items()}, tuple(contrasts),
                         values["primary_metric"], tuple(values["decision_metrics"]), values["level"],
                         values["adjustment"], values["focus_seed"], tuple(values["expectations"] or ()))


def check_runs(plan: StudyPlan, seeds_found, policy: str) -> None:
    """Error unless the records hold exactly the plan's replicates and the report uses the plan's primary policy."""
    found = sorted(set(seeds_found))
    if found != sorted(plan.seeds):
        raise PlanError(f"the records hold seeds {found} but study {plan.name!r} ({plan_path(plan.name).name}) "
                        f"planned {sorted(plan.seeds)}; compare its records ({plan.records}) or set study: null")
    if policy != plan.primary_policy:
        raise PlanError(f"threshold_policy = {policy!r} but study {plan.name!r} pre-registered "
                        f"{plan.primary_policy!r}; set threshold_policy to {plan.primary_policy!r}")


def expectation_results(plan: StudyPlan, summary: pd.DataFrame, difference_summary: pd.DataFrame) -> pd.DataFrame:
    """Each expectation with its measured value and whether it was met, from ``study.summarise_seeds`` rows and
    (for a half-width) ``study.summarise_differences`` rows at the plan's level.

    Columns: model, metric, statistic, bound, value, measured, met.
    """
    primary = summary[summary["policy"] == plan.primary_policy].set_index(["model", "metric"])
    differences = difference_summary[(difference_summary["policy"] == plan.primary_policy)
                                     & (difference_summary["reference"] == plan.reference)]
    half_widths = ((differences["ci_high"] - differences["ci_low"]) / 2).set_axis(
        pd.MultiIndex.from_frame(differences[["model", "metric"]]))
    rows = []
    for expectation in plan.expectations:
        key = (expectation.model, expectation.metric)
        measured = float(half_widths.loc[key] if expectation.statistic in DIFFERENCE_STATISTICS
                         else primary.loc[key, expectation.statistic])
        rows.append({**expectation.__dict__, "measured": measured, "met": expectation.holds(measured)})
    return pd.DataFrame(rows, columns=["model", "metric", "statistic", "bound", "value", "measured", "met"])


def shell_assignments(plan: StudyPlan | FactorialPlan) -> str:
    """The facts scripts/run_planned_study.sh needs, as bash assignments (arrays for the seeds and the models the
    plan trains)."""
    values = {"document": plan.document, "profile": plan.profile, "records": plan.records}
    scalars = " ".join(f"{name}={shlex.quote(value)}" for name, value in values.items())
    seeds = " ".join(map(str, plan.seeds))
    archs = plan.own_archs() if isinstance(plan, FactorialPlan) else (plan.reference, plan.compared)
    return f"{scalars} seeds=({seeds}) archs=({' '.join(archs)})"


if __name__ == "__main__":  # python -m cxrlib.plan NAME: a checked plan's facts for a shell; a bad plan exits 1
    if len(sys.argv) != 2:
        sys.exit("usage: python -m cxrlib.plan NAME  (the plan studies/NAME.yaml)")
    try:
        name = sys.argv[1]
        print(shell_assignments(load_factorial(name) if plan_kind(name) == "factorial" else load_plan(name)))
    except PlanError as error:
        sys.exit(f"error: {error}")
