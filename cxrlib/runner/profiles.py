"""Profiles: the YAML files in ``profiles/``, ``--set`` overrides, the default profile and the expected duration.

A profile file opens with comment lines saying what it is for (shown on the index page), one of which states
the measured wall time of the whole profile per kind of machine, in a fixed form the runner reads::

    # expected minutes: 2-core CPU avx512_bf16 48, 2-core CPU avx2 76, GPU unmeasured

A CPU entry may name the CPU's widest vector extension (the same CPU count runs at very different speeds with
and without AVX-512); an entry without one stands for any CPU with that many cores.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from cxrlib.contract import repo_relative
from cxrlib.params import ParameterError, check, profile_file, read_profile
from cxrlib.runtime import VECTOR_FLAGS
from cxrlib.runner import RUNNER_SET, RunError
from cxrlib.runner.machine import Machine

EXPECTED_LINE = re.compile(r"^#\s*expected minutes:\s*(?P<entries>.*)$", re.IGNORECASE)
EXPECTED_ENTRY = re.compile(r"^(?P<label>GPU|\d+-core CPU(?: (?:%s))?)\s+(?P<minutes>\d+(?:\.\d+)?|unmeasured)$"
                            % "|".join((*VECTOR_FLAGS, "no avx2")))
EXPECTED_FORM = ("'# expected minutes: 2-core CPU avx512_bf16 48, 2-core CPU avx2 76, GPU unmeasured' (entries: 'GPU' "
                 f"or '<n>-core CPU', optionally followed by one of {', '.join(VECTOR_FLAGS)}, then minutes)")


def profile_path(name_or_file: str) -> Path:
    """``profiles/<name>.yaml`` for a bare name, else the given YAML file."""
    try:
        return profile_file(name_or_file)
    except ParameterError as err:
        raise RunError(str(err)) from None


def parse_overrides(items: list[str] | None) -> dict:
    """``--set KEY=VALUE`` arguments as a dict, each value read as YAML (``epochs=2`` is the integer 2)."""
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RunError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=2")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise RunError(f"--set {item!r}: the value is not valid YAML: {err}") from err
    return overrides


def load_profile(path: Path, overrides: dict | None = None) -> dict:
    """The parameters of a profile file (its ``extends`` chain resolved), with ``overrides`` applied, checked against
    ``cxrlib.params``."""
    shown = repo_relative(path)
    try:
        params = read_profile(path)
    except ParameterError as err:
        raise RunError(str(err)) from None
    source = f"{shown} or the --set values {overrides}" if overrides else shown
    params = {**params, **(overrides or {})}
    runner_set = sorted(set(params) & set(RUNNER_SET))
    if runner_set:
        raise RunError(f"{source} sets {runner_set}: the runner sets these (profile = file name; "
                       "use --runs-dir / --reports-dir to move runs and reports)")
    try:
        return check(params, source=source)
    except ParameterError as err:
        raise RunError(str(err)) from err


def header_lines(profile_file: Path) -> list[str]:
    """The comment lines at the top of a profile file."""
    lines = []
    for line in Path(profile_file).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def profile_description(profile_file: Path) -> str:
    """What the profile is for: its opening comment lines, without the expected-minutes line."""
    return " ".join(line.lstrip("# ").strip() for line in header_lines(profile_file)
                    if not EXPECTED_LINE.match(line))


def expected_minutes(profile_file: Path) -> dict[str, float | None]:
    """The ``# expected minutes:`` entries of a profile file: machine label -> minutes (None: unmeasured)."""
    for line in header_lines(profile_file):
        match = EXPECTED_LINE.match(line)
        if not match:
            continue
        entries = {}
        for entry in filter(None, (part.strip() for part in match["entries"].split(","))):
            parsed = EXPECTED_ENTRY.match(entry)
            if not parsed:
                raise RunError(f"{repo_relative(profile_file)}: expected-minutes entry {entry!r} is not "
                               f"understood; write it as {EXPECTED_FORM}")
            minutes = parsed["minutes"]
            entries[parsed["label"]] = None if minutes == "unmeasured" else float(minutes)
        return entries
    return {}


def expected_duration(profile_file: Path, machine: Machine) -> str:
    """How long the whole profile should take on ``machine``, from the profile's measured table, in words."""
    entries = expected_minutes(profile_file)
    cpu = f"{machine.cores}-core CPU"
    labels = ["GPU"] if machine.gpu else [f"{cpu} {machine.vector}"] * bool(machine.vector) + [cpu]  # kind first
    where = f"this machine ({machine.describe()})"
    label = next((label for label in labels if entries.get(label) is not None), None)
    if label is not None:
        return f"about {entries[label]:.0f} min on {where}"
    measured = [f"{minutes:.0f} min on a {other.replace('CPU ', 'CPU with ')}" for other, minutes in entries.items()
                if minutes is not None]
    elsewhere = f" (measured: {'; '.join(measured)})" if measured else ""
    return f"not measured on {where}{elsewhere}"


def default_profile(machine: Machine) -> tuple[str, str]:
    """``full`` when a GPU is visible and ImageNet weights can be had, else ``cpu``; and why, in one line."""
    if machine.gpu and machine.imagenet_weights:
        return "full", "No --profile given: using 'full' (a GPU is visible and ImageNet weights are available)."
    missing = ("no GPU is visible" if not machine.gpu
               else "ImageNet weights are neither in the Keras cache (~/.keras/models) nor downloadable")
    return "cpu", (f"No --profile given: using 'cpu' (from scratch at 96 px on a CPU, the exploratory study's protocol; "
                   "not the published paper's: ImageNet weights at 224 px, profile 'full') "
                   f"because {missing}. Pass --profile to choose.")
