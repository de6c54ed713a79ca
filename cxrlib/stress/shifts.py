"""The stress test's declaration (``stress/shifts.yaml``): each kind of acquisition shift at its strengths, and
the noise seed, read and checked. No TensorFlow."""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from cxrlib.contract import STRESS_SHIFTS_FILE

REFERENCE = "none"  # the unshifted image, always scored first: what a decision flips from
# kind -> (what a strength means, its allowed open interval); the order is the order reports show them in.
KINDS = {
    "crop": ("share of each side kept (tighter field of view)", (0.0, 1.0)),
    "pad": ("share of each side the image shrinks to on a black frame", (0.0, 1.0)),
    "exposure": ("factor on every grey level", (0.0, math.inf)),
    "contrast": ("factor on deviations from the image's mean", (0.0, math.inf)),
    "gamma": ("exponent on grey levels scaled to 0..1", (0.0, math.inf)),
    "blur": ("Gaussian SD as a share of the image side", (0.0, 0.25)),
    "noise": ("Gaussian noise SD in grey levels", (0.0, 255.0)),
    "rotate": ("degrees anticlockwise", (-45.0, 45.0)),
}
IDENTITY = {"crop": 1.0, "pad": 1.0, "exposure": 1.0, "contrast": 1.0, "gamma": 1.0}  # strengths that change nothing


class StressError(ValueError):
    """The stress test cannot use a file (declaration, run directory, record); the message names it and the fix."""


@dataclass(frozen=True)
class Shift:
    """One condition: a kind of shift at one strength (``REFERENCE`` at 0: the image as decoded)."""

    kind: str
    strength: float


@dataclass(frozen=True)
class Declaration:
    """The declared shifts in file order and the noise seed."""

    shifts: tuple[Shift, ...]
    seed: int
    source: Path

    @property
    def conditions(self) -> tuple[Shift, ...]:
        """The reference first, then every declared shift."""
        return (Shift(REFERENCE, 0.0), *self.shifts)


def _strength(value, kind: str, path: Path) -> float:
    """One declared strength, checked against its kind's range."""
    meaning, (low, high) = KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low < value < high:
        raise StressError(f"{path}: {kind} strength {value!r} is not a number in ({low:g}, {high:g}) ({meaning}); "
                              "fix the entry")
    if value == IDENTITY.get(kind, 0.0):
        raise StressError(f"{path}: {kind} strength {value!r} leaves the image unchanged; the reference is always "
                              "scored, so remove it")
    return float(value)


def _shifts(entries, path: Path) -> tuple[Shift, ...]:
    """The shifts of the ``shifts`` mapping (kind -> non-empty list of strengths)."""
    if not isinstance(entries, dict) or not entries:
        raise StressError(f"{path}: `shifts` must map kinds ({', '.join(KINDS)}) to lists of strengths")
    shifts = []
    for kind, strengths in entries.items():
        if kind not in KINDS:
            raise StressError(f"{path}: unknown shift kind {kind!r}; use one of {', '.join(KINDS)}")
        if not isinstance(strengths, list) or not strengths:
            raise StressError(f"{path}: {kind} needs a non-empty list of strengths ({KINDS[kind][0]}), "
                                  f"got {strengths!r}")
        values = [_strength(value, kind, path) for value in strengths]
        if len(set(values)) < len(values):
            raise StressError(f"{path}: {kind} lists a strength twice ({values}); list each once")
        shifts += [Shift(kind, value) for value in values]
    return tuple(shifts)


def load_declaration(path: str | os.PathLike = STRESS_SHIFTS_FILE) -> Declaration:
    """The declaration in ``path``, checked; StressError names what is wrong and how to fix it."""
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StressError(f"{path} does not exist; pass the stress test's declaration (default "
                              f"{STRESS_SHIFTS_FILE.name} in {STRESS_SHIFTS_FILE.parent})") from None
    except yaml.YAMLError as error:
        raise StressError(f"{path} is not YAML ({error}); fix its syntax") from None
    if not isinstance(content, dict) or set(content) != {"seed", "shifts"}:
        found = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise StressError(f"{path} must hold exactly `seed` and `shifts`, found {found}")
    seed = content["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise StressError(f"{path}: seed {seed!r} is not a non-negative integer; declare one, e.g. seed: 36")
    return Declaration(_shifts(content["shifts"], path), seed, path)
