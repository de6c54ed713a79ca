"""A search declaration (``searches/<name>.yaml``): space, budget, sampler, pruner and objective, checked on load.

Everything that decides what a search does is in that file, committed before the search starts; nothing
here has a default that changes a search. Every problem of a file is reported at once, naming the key, the
value and the fix. Neither TensorFlow nor Optuna is imported.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from cxrlib.contract import ARCHS, PROFILES_DIR, REPORTS_DIR, SEARCHES_DIR, repo_relative
from cxrlib.params import PARAMETERS, RECIPE_PARAMETERS, ParameterError, check, profile_file, read_profile
from cxrlib.yaml_files import named_yaml, read_mapping

OBJECTIVES = ("balanced_log_loss",)  # validation only; why: cxrlib.evaluate.balanced_log_loss
DIMENSION_TYPES = ("float", "int", "categorical")
SEARCHABLE = RECIPE_PARAMETERS  # what a search finds is a per-architecture recipe
KEYS = {
    "name": "the search's name: its record goes to reports/tune-<name>/, its studies are <name>-<arch>",
    "base_profile": "the profile (profiles/<name>.yaml) giving every training parameter that is not searched",
    "archs": f"the architectures searched alike, a list of {', '.join(ARCHS)}",
    "split_seed": "seed of the search's patient split; choose one no study replicate uses",
    "training_seed": "training seed of every search trial, so configurations differ only in their parameters",
    "objective": f"the validation score minimised: one of {', '.join(OBJECTIVES)}",
    "trials_per_arch": "trials per architecture, pruned ones included",
    "sampler": "TPE sampler: {seed: <int>, startup_trials: <int, random trials before TPE>}",
    "pruner": "successive halving on epochs: {min_epochs: <int, first rung>, reduction_factor: <int >= 2>}",
    "stale_after_minutes": "a running trial without news for this long is taken as lost and run again",
    "rerun_seeds": "training seeds with which the best configuration, and the base profile's recipe, are trained "
                   "again on the search's split (the base recipe also with training_seed)",
    "space": f"the searched parameters: {{<parameter>: {{type: float|int|categorical, low, high, log, step, "
             f"choices}}}}; parameters: {', '.join(SEARCHABLE)}",
}


class SearchError(ValueError):
    """A search file is invalid; the message names each problem, the file and the fix."""


@dataclass(frozen=True)
class Dimension:
    """One searched parameter and the values it may take."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def distribution(self):
        """The Optuna distribution of this dimension."""
        import optuna

        if self.type == "categorical":
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.type == "int":
            return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def values_to_check(self) -> list:
        """The values at the edges of this dimension, which the parameter schema must accept."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpec:
    """A checked search declaration."""

    path: Path
    name: str
    base_profile: str
    base_params: dict  # the base profile's parameters, checked
    archs: tuple[str, ...]
    split_seed: int
    training_seed: int
    objective: str
    trials_per_arch: int
    sampler_seed: int
    startup_trials: int
    min_epochs: int
    reduction_factor: int
    stale_after_minutes: float
    rerun_seeds: tuple[int, ...]
    space: tuple[Dimension, ...]

    @property
    def record_dir(self) -> Path:
        """Where the search's committed record and report live."""
        return REPORTS_DIR / f"tune-{self.name}"

    @property
    def journal(self) -> Path:
        """The default storage: an Optuna journal file (text, appended, shareable by processes on one disk)."""
        return self.record_dir / "journal.log"

    def study_name(self, arch: str, reruns: bool = False) -> str:
        """The Optuna study of one architecture's search (or of its reruns)."""
        return f"{self.name}-{arch}" + ("-reruns" if reruns else "")

    def distributions(self) -> dict:
        """{parameter: Optuna distribution} of the space."""
        return {dimension.name: dimension.distribution() for dimension in self.space}

    def base_recipe(self) -> dict:
        """The base profile's values of the searched parameters: the recipe the search tries to beat."""
        return {dimension.name: self.base_params[dimension.name] for dimension in self.space}

    def training_params(self, values: dict) -> dict:
        """The base profile's parameters with a configuration's searched values put in."""
        return {**self.base_params, **values}


def search_path(name_or_file: str | Path) -> Path:
    """``searches/<name>.yaml`` for a bare name, else the given YAML file."""
    return named_yaml(SEARCHES_DIR, name_or_file, "search", SearchError)


def load_search(name_or_file: str | Path) -> SearchSpec:
    """Read and check a search file; one SearchError lists every problem."""
    path = search_path(name_or_file)
    shown = repo_relative(path)
    raw = read_mapping(path, "key: value", SearchError)
    problems = _key_problems(raw)
    if not problems:
        problems = _value_problems(raw)
    base_params = {}
    if not problems:
        base_params, base_problems = _base_params(raw["base_profile"])
        problems += base_problems
    space = ()
    if not problems:
        space, space_problems = _space(raw["space"], base_params)
        problems += space_problems
    if problems:
        raise SearchError(f"invalid search file {shown}:\n  - " + "\n  - ".join(f"{p}; fix it in {shown}" for p in problems))
    return SearchSpec(path=path, name=raw["name"], base_profile=raw["base_profile"], base_params=base_params,
                      archs=tuple(raw["archs"]), split_seed=raw["split_seed"], training_seed=raw["training_seed"],
                      objective=raw["objective"], trials_per_arch=raw["trials_per_arch"],
                      sampler_seed=raw["sampler"]["seed"], startup_trials=raw["sampler"]["startup_trials"],
                      min_epochs=raw["pruner"]["min_epochs"], reduction_factor=raw["pruner"]["reduction_factor"],
                      stale_after_minutes=raw["stale_after_minutes"], rerun_seeds=tuple(raw["rerun_seeds"]),
                      space=space)


def _unknown(name: str, known) -> str:
    """'did you mean' for a misspelt key."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"


def _key_problems(raw: dict) -> list[str]:
    """Missing and unknown top-level keys."""
    problems = [f"key '{key}' is missing: {help}" for key, help in KEYS.items() if key not in raw]
    problems += [f"unknown key '{key}'{_unknown(key, KEYS)}" for key in raw if key not in KEYS]
    return problems


def _is_int(value, low: int = 0) -> bool:
    """An integer (not a bool) >= low."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _value_problems(raw: dict) -> list[str]:
    """Type and range problems of the top-level values (the space is checked separately)."""
    problems = []
    if not isinstance(raw["name"], str) or not raw["name"].replace("-", "").replace("_", "").isalnum():
        problems.append(f"name = {raw['name']!r} must be letters, digits, '-' or '_'")
    archs = raw["archs"]
    if not isinstance(archs, list) or not archs or any(arch not in ARCHS for arch in archs) or len(set(archs)) < len(archs):
        problems.append(f"archs = {archs!r} must be a non-empty list of distinct architectures from {', '.join(ARCHS)}")
    for key in ("split_seed", "training_seed"):
        if not _is_int(raw[key]):
            problems.append(f"{key} = {raw[key]!r} must be an integer >= 0")
    if raw["objective"] not in OBJECTIVES:
        problems.append(f"objective = {raw['objective']!r} must be one of {', '.join(OBJECTIVES)}")
    if not _is_int(raw["trials_per_arch"], 1):
        problems.append(f"trials_per_arch = {raw['trials_per_arch']!r} must be an integer >= 1")
    sampler, pruner = raw["sampler"], raw["pruner"]
    if not (isinstance(sampler, dict) and set(sampler) == {"seed", "startup_trials"} and _is_int(sampler["seed"])
            and _is_int(sampler["startup_trials"], 1)):
        problems.append(f"sampler = {sampler!r} must be {{seed: <int >= 0>, startup_trials: <int >= 1>}}")
    if not (isinstance(pruner, dict) and set(pruner) == {"min_epochs", "reduction_factor"}
            and _is_int(pruner["min_epochs"], 1) and _is_int(pruner["reduction_factor"], 2)):
        problems.append(f"pruner = {pruner!r} must be {{min_epochs: <int >= 1>, reduction_factor: <int >= 2>}}")
    stale = raw["stale_after_minutes"]
    if not isinstance(stale, (int, float)) or isinstance(stale, bool) or stale <= 0:
        problems.append(f"stale_after_minutes = {stale!r} must be a positive number (longer than one epoch takes)")
    seeds = raw["rerun_seeds"]
    if (not isinstance(seeds, list) or not all(_is_int(seed) for seed in seeds) or len(set(seeds)) < len(seeds)
            or raw["training_seed"] in seeds):
        problems.append(f"rerun_seeds = {seeds!r} must be a list of distinct integers >= 0 other than training_seed")
    if not isinstance(raw["space"], dict) or not raw["space"]:
        problems.append(f"space = {raw['space']!r} must be a non-empty mapping {{parameter: dimension}}")
    return problems


def _base_params(profile: str) -> tuple[dict, list[str]]:
    """The base profile's parameters (its ``extends`` chain resolved), checked by cxrlib.params."""
    if not isinstance(profile, str) or not (PROFILES_DIR / f"{profile}.yaml").is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        return {}, [f"base_profile = {profile!r} names no file in profiles/ (known: {known})"]
    try:
        return check(read_profile(profile), source=repo_relative(profile_file(profile))), []
    except ParameterError as err:
        return {}, [f"base_profile {profile!r} is invalid: {err}"]


def _space(raw_space: dict, base_params: dict) -> tuple[tuple[Dimension, ...], list[str]]:
    """The dimensions of the space, each checked against the parameter schema."""
    dimensions, problems = [], []
    for name, entry in raw_space.items():
        where = f"space.{name}"
        if name not in SEARCHABLE:
            problems.append(f"{where}: '{name}' cannot be searched{_unknown(name, SEARCHABLE)}")
            continue
        if not isinstance(entry, dict) or entry.get("type") not in DIMENSION_TYPES:
            problems.append(f"{where} = {entry!r} needs type: one of {', '.join(DIMENSION_TYPES)}")
            continue
        problem, dimension = _dimension(name, entry)
        if problem:
            problems.append(f"{where} = {entry!r} {problem}")
            continue
        spec = PARAMETERS[name]
        bad = [value for value in dimension.values_to_check() if spec.problem(value)]
        if bad:
            problems.append(f"{where} reaches {bad}, which {name} does not accept: expected {spec.expected()}")
            continue
        dimensions.append(dimension)
    return tuple(dimensions), problems


def _dimension(name: str, entry: dict) -> tuple[str | None, Dimension | None]:
    """(problem, None) or (None, the Dimension) for one space entry."""
    kind = entry["type"]
    allowed = {"categorical": {"type", "choices"}, "int": {"type", "low", "high", "log", "step"},
               "float": {"type", "low", "high", "log", "step"}}[kind]
    extra = sorted(set(entry) - allowed)
    if extra:
        return f"has keys {extra} a {kind} dimension does not take (it takes {', '.join(sorted(allowed))})", None
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or len(set(map(repr, choices))) < len(choices):
            return "needs choices: a list of at least two distinct values", None
        return None, Dimension(name, kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    low, high, log, step = entry.get("low"), entry.get("high"), entry.get("log", False), entry.get("step")
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        return f"needs {kind} bounds low < high", None
    if not isinstance(log, bool) or (log and low <= 0):
        return "has log: true with low <= 0 (a log scale needs positive bounds), or a log that is not true/false", None
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0 or log):
        return f"has step {step!r}: a positive {kind}, and not with log: true", None
    return None, Dimension(name, kind, low=low, high=high, log=log, step=step)
