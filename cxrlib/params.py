"""Notebook parameters: one schema (type, allowed values, range) checked at the top of every notebook.

Profiles (``profiles/<name>.yaml``) and the notebooks' ``parameters`` cells use the names below; the
runner validates a whole profile before it starts and each notebook validates what it received.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"


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


PARAMETERS: dict[str, Param] = {
    "profile": Param(str, "profile name; reports and runs go to reports/<profile>, runs/<profile>"),
    "data_dir": Param(str, "Kaggle-layout chest_xray folder; null: $CXR_DATA_DIR, else download", nullable=True),
    "runs_dir": Param(str, "folder holding one run directory per model (set by the runner)"),
    "report_dir": Param(str, "folder receiving comparison tables (set by the runner)"),
    "image_size": Param(int, "square input size in pixels", low=32, high=1024),
    "batch_size": Param(int, "images per training step", low=1, high=4096),
    "epochs": Param(int, "epochs of the first phase (head only when the base is frozen)", low=1, high=1000),
    "learning_rate": Param(float, "learning rate of the first phase", low=1e-7, high=1.0),
    "lr_schedule": Param(str, "'cosine': anneal each phase's rate to 0; 'plateau': cut it when validation AUC stalls",
                         choices=("plateau", "cosine")),
    "label_smoothing": Param(float, "binary cross-entropy label smoothing (0: none)", low=0.0, high=0.5),
    "finetune_epochs": Param(int, "epochs of the optional fine-tuning phase (0: none; needs train_base false)",
                             low=0, high=1000),
    "finetune_learning_rate": Param(float, "learning rate of the fine-tuning phase", low=1e-8, high=1.0),
    "weights": Param(str, "backbone initialisation: 'imagenet' or null (from scratch)", choices=("imagenet",),
                     nullable=True),
    "train_base": Param(bool, "train the backbone in the first phase (false: head only, the reference protocol)"),
    "head_units": Param(int, "units of the Dense layer of the head (reference: 1024)", low=1, high=65536),
    "dropout": Param(float, "dropout before the output layer", low=0.0, high=0.95),
    "augment": Param(bool, "random rotation, zoom, shift, brightness and contrast jitter during training"),
    "precision": Param(str, "'auto' uses bfloat16 where the hardware supports it",
                       choices=("auto", "float32", "mixed_bfloat16", "mixed_float16")),
    "subsample_per_class": Param(int, "images per class and subset (null: all)", low=2, nullable=True),
    "val_fraction": Param(float, "share of training patients held out for validation", low=0.01, high=0.5),
    "threshold_policy": Param(str, "how the validation split picks the decision threshold",
                              choices=("youden", "sensitivity")),
    "target_sensitivity": Param(float, "validation sensitivity the 'sensitivity' policy must reach",
                                low=0.5, high=1.0),
    "n_boot": Param(int, "bootstrap resamples for confidence intervals (>= 1000 for reported CIs)",
                    low=10, high=100000),
    "n_examples": Param(int, "images per class in sample and Grad-CAM grids", low=1, high=32),
    "seed": Param(int, "random seed for splits, subsampling, augmentation and initialisation", low=0,
                  high=2**31 - 1),
}

# Parameters passed unchanged to cxrlib.train.TrainConfig (same names there).
TRAIN_CONFIG_PARAMETERS = (
    "image_size", "batch_size", "epochs", "learning_rate", "lr_schedule", "label_smoothing", "finetune_epochs",
    "finetune_learning_rate", "weights", "train_base", "head_units", "dropout", "augment", "precision", "threshold_policy",
    "target_sensitivity", "seed",
)
TRAIN_PARAMETERS = ("profile", "data_dir", "runs_dir", *TRAIN_CONFIG_PARAMETERS, "subsample_per_class",
                    "val_fraction", "n_boot", "n_examples")
# The parameters each kind of notebook declares in its `parameters` cell (tests/test_notebooks.py checks).
NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "explore": ("profile", "data_dir", "subsample_per_class", "val_fraction", "n_examples", "seed"),
    "train": TRAIN_PARAMETERS,
    "compare": ("profile", "runs_dir", "report_dir", "n_boot", "n_examples", "seed"),
}


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
            close = difflib.get_close_matches(name, PARAMETERS, n=1)
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


def train_config_values(params: dict) -> dict:
    """The subset of checked notebook parameters that ``cxrlib.train.TrainConfig`` takes."""
    return {name: params[name] for name in TRAIN_CONFIG_PARAMETERS}
