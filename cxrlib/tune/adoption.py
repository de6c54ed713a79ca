"""Which studies train a search's tuned recipes, read from the study plans (studies/*.yaml) and their profiles, so
the search's report says what came of the search from the plans themselves, not from a sentence written by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrlib import plan
from cxrlib.backbones import title_of
from cxrlib.contract import INDEX_PAGE, REPO_ROOT, REPORTS_DIR, STUDIES_DIR
from cxrlib.params import read_profile

from .spec import SearchSpec


@dataclass(frozen=True)
class Adoption:
    """A study that trains at least one of the search's tuned recipes: its plan, its page, each model's recipe."""

    title: str
    plan_file: Path  # studies/<name>.yaml
    document: Path  # the plan's document (docs/...)
    report: Path | None  # the study's rendered page, when it has one
    recipes: dict[str, str]  # arch -> the recipe its profile trains it at, in words


def _plan(name: str) -> plan.StudyPlan | plan.FactorialPlan:
    """The checked plan studies/<name>.yaml, of whichever kind."""
    return plan.load_factorial(name) if plan.plan_kind(name) == "factorial" else plan.load_plan(name)


def trained_values(profile: dict, arch: str, names) -> dict:
    """The searched parameters' values ``arch`` trains at under ``profile``: its ``recipes`` entry over the top
    level."""
    values = {**profile, **(profile.get("recipes") or {}).get(arch, {})}
    return {name: values.get(name) for name in names}


def recipe_words(values: dict, arch: str, spec: SearchSpec, tuned: dict[str, dict], best_trial: dict[str, int]) -> str:
    """``values`` named: the shared recipe, a model's tuned recipe (with its trial), or a recipe of its own."""
    if values == spec.base_recipe():
        return "the shared recipe"
    for owner, recipe in tuned.items():
        if values == recipe:
            whose = "its" if owner == arch else f"{title_of(owner)}'s"
            return f"{whose} tuned recipe (trial {best_trial[owner]})"
    return "a recipe of its own"


def _report_of(study: plan.StudyPlan | plan.FactorialPlan) -> Path | None:
    """The study's page (reports/<profile>/index.html) for a two-model study whose page exists (a factorial plan
    gathers its cells from several studies' records and is linked by its plan only)."""
    page = REPORTS_DIR / study.profile / INDEX_PAGE
    return page if study.kind in plan.KINDS and page.is_file() else None


def adoptions(spec: SearchSpec, tuned: dict[str, dict], best_trial: dict[str, int]) -> list[Adoption]:
    """Every study plan whose profile trains one of ``tuned`` (the search's tuned recipes, as the tuned profile
    writes them), in plan-name order."""
    names = [dimension.name for dimension in spec.space]
    found = []
    for plan_file in sorted(STUDIES_DIR.glob("*.yaml")):
        study = _plan(plan_file.stem)
        profile = read_profile(study.profile)
        trained = {arch: trained_values(profile, arch, names) for arch in spec.archs}
        if any(values in tuned.values() for values in trained.values()):
            recipes = {arch: recipe_words(values, arch, spec, tuned, best_trial) for arch, values in trained.items()}
            found.append(Adoption(study.title, plan_file, REPO_ROOT / study.document, _report_of(study), recipes))
    return found
