"""Notebook parameters: one schema (type, allowed values, range) checked at the top of every notebook.

Profiles (``profiles/<name>.yaml``) and the notebooks' ``parameters`` cells use the names below; the
runner validates a whole profile before it starts and each notebook validates what it received.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from .contract import (ARCHS, LR_SCHEDULES, PRECISION_CHOICES, PROFILES_DIR, THRESHOLD_POLICIES, WEIGHTS_FILE_SUFFIXES,
                       repo_relative)
from .yaml_files import named_yaml, read_mapping

EXTENDS = "extends"  # a profile's key naming the profile it starts from: it then states only what differs


class ParameterError(ValueError):
    """One or more parameters are invalid; the message names each one, its value and the fix."""


@dataclass(frozen=True)
class Param:
    """What one parameter may hold."""

    kind: type  # int, float, str or bool (an int is accepted where a float is expected)
    help: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    nullable: bool = False

    def expected(self) -> str:
        """A short description of the accepted values, for error messages."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[self.kind]
            if self.low is not None and self.high is not None:
                text += f" in [{self.low}, {self.high}]"
            elif self.low is not None:
                text += f" >= {self.low}"
        return text + (" or null" if self.nullable else "")

    def problem(self, value) -> str | None:
        """None when ``value`` is acceptable, else what is wrong with it."""
        if value is None:
            return None if self.nullable else "must not be null"
        if self.kind is float:
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif self.kind is int:
            ok_type = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok_type = isinstance(value, self.kind)
        if not ok_type:
            return f"has type {type(value).__name__}"
        if self.choices is not None and value not in self.choices:
            return "is not an allowed value"
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            return "is out of range"
        return None


class WeightsParam(Param):
    """The backbone weights: null, 'imagenet', a weights file, a path template with {arch}, or {arch: one of these}."""

    def expected(self) -> str:
        """The accepted forms, for error messages."""
        entries = ", ".join(f"{arch}: <file>" for arch in ARCHS)
        return (f"null, 'imagenet', a weights file path ending in {'/'.join(WEIGHTS_FILE_SUFFIXES)} (may contain "
                f"{{arch}}), or a mapping {{{entries}}} of these")

    def problem(self, value) -> str | None:
        """None when ``value`` is one accepted form; a mapping needs an acceptable entry for every backbone."""
        if not isinstance(value, dict):
            return self.single_problem(value)
        unknown = sorted(map(str, set(value) - set(ARCHS)))
        if unknown:
            return f"names unknown backbone(s) {unknown}"
        missing = [arch for arch in ARCHS if arch not in value]
        if missing:
            return f"has no entry for {', '.join(missing)}"
        bad = [f"{arch}: {entry!r} {self.single_problem(entry)}" for arch, entry in value.items()
               if self.single_problem(entry)]
        return f"has invalid entries ({'; '.join(bad)})" if bad else None

    @staticmethod
    def single_problem(value) -> str | None:
        """None for null, 'imagenet' or a weights file path (template), else what is wrong."""
        if value is None or value == "imagenet":
            return None
        if not isinstance(value, str):
            return f"has type {type(value).__name__}"
        return None if value.endswith(WEIGHTS_FILE_SUFFIXES) else "is not an allowed value"


class SeedsParam(Param):
    """A non-empty list of distinct seeds: one replicate (split + training) per seed."""

    def expected(self) -> str:
        """The accepted form, for error messages."""
        return f"a non-empty list of distinct integers in [0, {2**31 - 1}], e.g. [42] or [1, 2, 3, 4, 5]"

    def problem(self, value) -> str | None:
        """None for a non-empty list of distinct non-negative integers, else what is wrong."""
        if not isinstance(value, list) or not value:
            return "is not a non-empty list"
        if any(not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31 for seed in value):
            return "holds a value that is not an integer in range"
        return "repeats a seed" if len(set(value)) != len(value) else None


class RecipesParam(Param):
    """Per-architecture recipes: {arch: {recipe parameter: value}}, overriding the profile's values for that model."""

    def expected(self) -> str:
        """The accepted form, for error messages."""
        return (f"null or a mapping {{<{'|'.join(ARCHS)}>: {{<parameter>: <value>}}}} with parameters from "
                f"{', '.join(RECIPE_PARAMETERS)}")

    def problem(self, value) -> str | None:
        """None for null or a mapping of known architectures to mappings of valid recipe parameter values."""
        if value is None:
            return None
        if not isinstance(value, dict):
            return f"has type {type(value).__name__}"
        unknown = sorted(map(str, set(value) - set(ARCHS)))
        if unknown:
            return f"names unknown backbone(s) {unknown}"
        bad = []
        for arch, recipe in value.items():
            if not isinstance(recipe, dict):
                bad.append(f"{arch}: {recipe!r} is not a mapping")
                continue
            bad += [f"{arch}.{name}: not a recipe parameter" for name in recipe if name not in RECIPE_PARAMETERS]
            bad += [f"{arch}.{name} = {entry!r} {PARAMETERS[name].problem(entry)} (expected "
                    f"{PARAMETERS[name].expected()})" for name, entry in recipe.items()
                    if name in RECIPE_PARAMETERS and PARAMETERS[name].problem(entry)]
        return f"has invalid entries ({'; '.join(bad)})" if bad else None


PARAMETERS: dict[str, Param] = {
    "profile": Param(str, "profile name; reports and runs go to reports/<profile>, runs/<profile>"),
    "data_dir": Param(str, "Kaggle-layout chest_xray folder; null: $CXR_DATA_DIR, else download", nullable=True),
    "runs_dir": Param(str, "folder holding one run directory per model (set by the runner)"),
    "report_dir": Param(str, "folder receiving report tables and run records (set by the runner)"),
    "image_size": Param(int, "square input size in pixels", low=32, high=1024),
    "batch_size": Param(int, "images per training step", low=1, high=4096),
    "epochs": Param(int, "epochs of the first phase (head only when the base is frozen)", low=1, high=1000),
    "learning_rate": Param(float, "learning rate of the first phase", low=1e-7, high=1.0),
    "lr_schedule": Param(str, "'cosine': anneal each phase's rate to 0; 'plateau': cut it when validation AUC stalls",
                         choices=LR_SCHEDULES),
    "label_smoothing": Param(float, "binary cross-entropy label smoothing (0: none)", low=0.0, high=0.5),
    "weight_decay": Param(float, "decoupled weight decay of the optimizer (0: none; each step multiplies a weight "
                          "by 1 - learning rate x weight_decay, as AdamW)", low=0.0, high=1.0),
    "finetune_epochs": Param(int, "epochs of the optional fine-tuning phase (0: none; needs train_base false)",
                             low=0, high=1000),
    "finetune_learning_rate": Param(float, "learning rate of the fine-tuning phase", low=1e-8, high=1.0),
    "weights": WeightsParam(str, "backbone initialisation: from scratch, ImageNet, or your own file per backbone",
                            nullable=True),
    "train_base": Param(bool, "train the backbone in the first phase (false: head only, the published protocol)"),
    "head_units": Param(int, "units of the Dense layer of the head (reference: 1024)", low=1, high=65536),
    "dropout": Param(float, "dropout before the output layer", low=0.0, high=0.95),
    "augment": Param(bool, "random rotation, zoom, shift, brightness and contrast jitter during training"),
    "augment_strength": Param(float, "factor on every augmentation range (1: rotation 10 degrees, zoom 0.15, shift "
                              "0.1, brightness 0.1, contrast 0.3)", low=0.01, high=3.0),
    "precision": Param(str, "'auto' uses bfloat16 where the hardware supports it",
                       choices=PRECISION_CHOICES),
    "subsample_per_class": Param(int, "images per class and subset (null: all)", low=2, nullable=True),
    "val_fraction": Param(float, "share of training patients held out for validation", low=0.01, high=0.5),
    "threshold_policy": Param(str, "the pre-registered operating point: 'fixed' 0.5, or set on validation by "
                              "'youden_midpoint', 'youden' or 'sensitivity' (the others are shown as sensitivity "
                              "analysis)", choices=THRESHOLD_POLICIES),
    "youden_delta": Param(float, "'youden_midpoint': thresholds whose validation Youden J is within this of its "
                          "maximum form the plateau whose logit midpoint is taken", low=0.0, high=0.5),
    "target_sensitivity": Param(float, "validation sensitivity the 'sensitivity' policy must reach",
                                low=0.5, high=1.0),
    "n_boot": Param(int, "bootstrap resamples for confidence intervals (>= 1000 for reported CIs)",
                    low=10, high=100000),
    "n_examples": Param(int, "images per class in sample and Grad-CAM grids", low=1, high=32),
    "sampling_seed": Param(int, "seed of notebooks 01 and 04's sampling (example images, histograms, the metadata "
                           "baseline, bootstrap resamples); never a split or a training seed", low=0, high=2**31 - 1),
    "seeds": SeedsParam(list, "one replicate per seed: training seed (initialisation, order, augmentation, "
                        "dropout) and, unless split_seed is set, the seed of the patient split"),
    "split_seed": Param(int, "seed of the patient split and subsampling for every replicate (null: each "
                        "replicate's own seed, so replicates differ in split and training)", low=0,
                        high=2**31 - 1, nullable=True),
    "focus_seed": Param(int, "the replicate shown image by image (curves, disagreements, Grad-CAM); null: the "
                        "smallest seed found", low=0, high=2**31 - 1, nullable=True),
    "study": Param(str, "the study plan (studies/<name>.yaml) the compared records belong to: its seeds and policy "
                   "are checked, its decision and expectations reported; null: no plan", nullable=True),
    "recipes": RecipesParam(dict, "per-architecture training recipes that override the values above for one model "
                            "(a tuned profile, written by python -m cxrlib.tune export)", nullable=True),
    "verbose": Param(int, "Keras training output: 1 progress bar (interactive), 2 one line per epoch (batch), "
                     "0 silent", choices=(0, 1, 2)),
}

# Former names of parameters, so an old profile or papermill call is told the new name.
RENAMED = {"seed": "sampling_seed"}

# Parameters passed unchanged to cxrlib.train.TrainConfig (same names there).
TRAIN_CONFIG_PARAMETERS = (
    "image_size", "batch_size", "epochs", "learning_rate", "lr_schedule", "label_smoothing", "weight_decay",
    "finetune_epochs", "finetune_learning_rate", "weights", "train_base", "head_units", "dropout", "augment",
    "augment_strength", "precision", "threshold_policy",
    "target_sensitivity", "youden_delta", "verbose",
)
# The parameters a per-architecture recipe may set (and a search may search): how a model is trained, not
# what data, arithmetic or operating point it is judged by.
RECIPE_PARAMETERS = ("image_size", "batch_size", "epochs", "learning_rate", "lr_schedule", "label_smoothing",
                     "weight_decay", "dropout", "augment", "augment_strength", "head_units", "finetune_epochs",
                     "finetune_learning_rate")
TRAIN_PARAMETERS = ("profile", "data_dir", "runs_dir", "report_dir", *TRAIN_CONFIG_PARAMETERS, "recipes", "seeds",
                    "split_seed", "subsample_per_class", "val_fraction", "n_boot", "n_examples")
# The parameters each kind of notebook declares in its `parameters` cell (tests/test_notebooks.py checks).
NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "explore": ("profile", "data_dir", "subsample_per_class", "val_fraction", "seeds", "split_seed", "n_examples",
                "sampling_seed"),
    "train": TRAIN_PARAMETERS,
    "compare": ("profile", "data_dir", "runs_dir", "report_dir", "threshold_policy", "youden_delta", "target_sensitivity",
                "focus_seed", "study", "n_boot", "n_examples", "sampling_seed"),
}


def profile_file(name_or_file: str | Path) -> Path:
    """``profiles/<name>.yaml`` for a bare name, else the given YAML file; ParameterError naming the known ones."""
    return named_yaml(PROFILES_DIR, name_or_file, "profile", ParameterError)


def read_profile(name_or_file: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A profile's parameters (unchecked): its own values over those of the profile it ``extends``, recursively."""
    path = profile_file(name_or_file)
    if path in _chain:
        loop = " -> ".join(repo_relative(step) for step in (*_chain, path))
        raise ParameterError(f"profiles extend each other in a loop ({loop}); let one of them extend none")
    values = read_mapping(path, "parameter: value", ParameterError)
    base = values.pop(EXTENDS, None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ParameterError(f"{repo_relative(path)}: {EXTENDS} = {base!r} must name a profile (e.g. {EXTENDS}: cpu)")
    return {**read_profile(base, (*_chain, path)), **values}


def source_of(profile: object) -> str:
    """Where a profile's values come from, for error messages."""
    path = PROFILES_DIR / f"{profile}.yaml"
    return f"profiles/{path.name}" if isinstance(profile, str) and path.is_file() else "the parameters cell"


def check(params: dict, source: str | None = None, required: tuple[str, ...] = ()) -> dict:
    """Return ``params`` unchanged if every value fits the schema, else raise one ParameterError listing all.

    ``source`` names where the values came from (default: the profile file, by ``params['profile']``);
    ``required`` lists names that must be present.
    """
    source = source or source_of(params.get("profile"))
    errors = []
    for name in required:
        if name not in params:
            errors.append(f"parameter '{name}' is missing; set it in {source}")
    for name, value in params.items():
        spec = PARAMETERS.get(name)
        if spec is None:
            close = [RENAMED[name]] if name in RENAMED else difflib.get_close_matches(name, PARAMETERS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(PARAMETERS)}"
            errors.append(f"unknown parameter '{name}' in {source}{hint}")
            continue
        problem = spec.problem(value)
        if problem:
            errors.append(f"parameter '{name}' = {value!r} {problem}: expected {spec.expected()} "
                          f"({spec.help}); fix it in {source}")
    if params.get("finetune_epochs") and params.get("train_base") is True:
        errors.append(f"finetune_epochs = {params['finetune_epochs']} needs train_base false (fine-tuning follows "
                      f"a frozen-base phase); set finetune_epochs 0 or train_base false in {source}")
    if errors:
        raise ParameterError("invalid notebook parameters:\n  - " + "\n  - ".join(errors))
    return params


def notebook_parameters(namespace: dict, kind: str) -> dict:
    """Collect and check the parameters a notebook of ``kind`` (explore, train, compare) declares."""
    names = NOTEBOOK_PARAMETERS[kind]
    params = {name: namespace[name] for name in names if name in namespace}
    return check(params, required=names)


def train_config_values(params: dict, seed: int, split_seed: int, arch: str | None = None) -> dict:
    """What ``cxrlib.train.TrainConfig`` takes for the replicate with training seed ``seed`` on split ``split_seed``.

    With ``arch``, that architecture's entry of ``recipes`` (when the profile has one) overrides the shared values.
    """
    recipe = (params.get("recipes") or {}).get(arch, {})
    return {**{name: params[name] for name in TRAIN_CONFIG_PARAMETERS}, **recipe, "seed": seed, "split_seed": split_seed}


def policy_kwargs(params: dict) -> dict:
    """The threshold policies' parameters (``cxrlib.evaluate.choose_threshold`` keywords) as the profile set them."""
    return {"target_sensitivity": params["target_sensitivity"], "delta": params["youden_delta"]}


def replicate_seeds(params: dict) -> list[tuple[int, int]]:
    """(training seed, split seed) of each replicate: ``split_seed`` when set, else the replicate's own seed."""
    return [(seed, seed if params["split_seed"] is None else params["split_seed"]) for seed in params["seeds"]]
