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
import yaml

from cxrlib.contract import (ARCHS, ENSEMBLE, HEADLINE_METRICS, RECORDS_DIR, REPO_ROOT, STUDIES_DIR,
                             THRESHOLD_POLICIES, repo_relative)

KINDS = ("exploratory", "confirmatory")
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
    path = plan_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))
        raise PlanError(f"no study plan {repo_relative(path)}; set `study` to one of {known} or null")
    where = repo_relative(path)
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise PlanError(f"{where} is not valid YAML ({error}); fix the file") from None
    if not isinstance(values, dict):
        raise PlanError(f"{where} does not hold a mapping of {', '.join(KEYS)}")
    unknown, missing = set(values) - set(KEYS) - set(OPTIONAL_KEYS), [key for key in KEYS if key not in values]
    if unknown or missing:
        hints = [f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
            key, KEYS + OPTIONAL_KEYS, n=1)) else "") for key in sorted(unknown)] + [f"missing key {key!r}" for key in missing]
        raise PlanError(f"{where}: {'; '.join(hints)}")
    seeds = values["seeds"]
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            and len(set(seeds)) == len(seeds)):
        raise PlanError(f"{where}: seeds = {seeds!r} must be a list of distinct integers")
    checks = {"kind": KINDS, "primary_policy": THRESHOLD_POLICIES, "reference": ARCHS, "compared": ARCHS}
    for key, allowed in checks.items():
        if values[key] not in allowed:
            raise PlanError(f"{where}: {key} = {values[key]!r} is not one of {', '.join(allowed)}")
    if values["reference"] == values["compared"]:
        raise PlanError(f"{where}: reference and compared are both {values['reference']!r}; name two architectures")
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


def shell_assignments(plan: StudyPlan) -> str:
    """The facts scripts/run_planned_study.sh needs, as bash assignments (arrays for the seeds and the two models)."""
    values = {"document": plan.document, "profile": plan.profile, "records": plan.records}
    scalars = " ".join(f"{name}={shlex.quote(value)}" for name, value in values.items())
    seeds = " ".join(map(str, plan.seeds))
    return f"{scalars} seeds=({seeds}) archs=({plan.reference} {plan.compared})"


if __name__ == "__main__":  # python -m cxrlib.plan NAME: a checked plan's facts for a shell; a bad plan exits 1
    if len(sys.argv) != 2:
        sys.exit("usage: python -m cxrlib.plan NAME  (the plan studies/NAME.yaml)")
    try:
        print(shell_assignments(load_plan(sys.argv[1])))
    except PlanError as error:
        sys.exit(f"error: {error}")
