"""The product of a finished search: a tuned profile (``profiles/<base>-tuned.yaml``) the runner trains from.

It is the base profile with a ``recipes`` entry holding each architecture's best validation configuration, so
``./run_all.sh --profile <base>-tuned`` trains every model with its own tuned recipe. Nothing else changes but
``study``, which is null: the base profile's study plan governs the base recipe's records, not these.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from cxrlib.contract import PROFILES_DIR, repo_relative
from cxrlib.params import EXTENDS, check, read_profile
from cxrlib.files import write_atomic

from . import ledger
from .spec import SearchSpec


TUNED_STUDY_LINE = "study: null                     # a study of these recipes names its plan: --set study=NAME"


def tuned_profile_path(spec: SearchSpec) -> Path:
    """Where the tuned profile of a search's base profile goes."""
    return PROFILES_DIR / f"{spec.base_profile}-tuned.yaml"


def tuned_recipes(spec: SearchSpec, storage) -> dict:
    """{arch: best configuration} of a finished search, with plain YAML values."""
    recipes = {}
    for arch in spec.archs:
        values = ledger.best_values(ledger.load(spec, storage, arch))
        recipes[arch] = {name: (float(f"{value:.6g}") if isinstance(value, float) else value)  # 6 significant digits
                         for name, value in values.items()}
    return recipes


def replicate_minutes(spec: SearchSpec, storage) -> float:
    """Measured wall minutes of one replicate at the tuned recipes: each architecture's mean tuned-rerun time, summed.

    Notebooks 01 and 04 add a few minutes that this leaves out (the profile header says so).
    """
    total = 0.0
    for arch in spec.archs:
        reruns = ledger.load(spec, storage, arch, reruns=True).get_trials(deepcopy=False, states=ledger.COUNTED)
        seconds = [t.user_attrs["wall_seconds"] for t in reruns if t.user_attrs.get(ledger.RECIPE) == "tuned"]
        total += sum(seconds) / len(seconds) / 60 if seconds else 0.0
    return total


def write_tuned_profile(spec: SearchSpec, storage, path: Path | None = None) -> Path:
    """Write the tuned profile (a header, ``extends`` the base profile, no study, and ``recipes``); returns its
    path."""
    path = Path(path or tuned_profile_path(spec))
    base_path = PROFILES_DIR / f"{spec.base_profile}.yaml"
    body = [f"{EXTENDS}: {spec.base_profile}", TUNED_STUDY_LINE]
    recipes = tuned_recipes(spec, storage)
    header = [
        f"# The {spec.base_profile} protocol with each architecture's own tuned recipe: {repo_relative(base_path)} plus the",
        f"# best validation configuration of the search '{spec.name}' ({repo_relative(spec.path)}, record",
        f"# {repo_relative(spec.record_dir)}/). Written by: python -m cxrlib.tune export {spec.name}",
        "# Expected minutes: the training of both models at these recipes as the search's reruns measured it.",
        f"# expected minutes: 2-core CPU {replicate_minutes(spec, storage):.0f}, GPU unmeasured",
    ]
    recipes_text = yaml.safe_dump({"recipes": recipes}, sort_keys=False, default_flow_style=None, width=200)
    text = "\n".join(header + body) + "\n" + recipes_text
    child = yaml.safe_load(text)
    check({**read_profile(spec.base_profile), **{k: v for k, v in child.items() if k != EXTENDS}},
          source=repo_relative(path))
    return write_atomic(path, text)
