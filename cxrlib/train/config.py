"""TrainConfig: every parameter of one run, checked when it is made.

Fields that are also notebook parameters (same name in cxrlib.params.PARAMETERS) are checked by
cxrlib.params.check, so a profile and a TrainConfig accept exactly the same values; the fields only a
TrainConfig has are checked here with the same Param specs. TensorFlow is not imported.
"""
import dataclasses
import os
from dataclasses import dataclass

from .. import params
from ..contract import ARCHS, STRATEGIES

# Fields that change how a run is shown or cached, not its result: they may differ when resuming.
PRESENTATION_FIELDS = ("verbose", "feature_cache_dir", "data_cache", "latency_repeats", "name", "fit_safeguards",
                       "stress_test")
# The fields only a TrainConfig has that can be wrong in ways worth reporting before a run starts.
OWN_FIELDS = {
    "arch": params.Param(str, "backbone architecture", choices=ARCHS),
    "strategy": params.Param(str, "tf.distribute strategy ('auto': mirrored on several GPUs)", choices=STRATEGIES),
    "early_stopping_patience": params.Param(int, "epochs without a better validation AUC before a phase stops "
                                                 "(null: never)", low=1, nullable=True),
    "plateau_factor": params.Param(float, "factor the 'plateau' schedule multiplies the rate by", low=1e-3,
                                   high=0.999),
    "plateau_patience": params.Param(int, "epochs without a better validation AUC before the rate is cut", low=0),
    "latency_repeats": params.Param(int, "timed single-image predictions for latency_ms", low=1),
}


@dataclass
class TrainConfig:
    """Every parameter of a run; notebooks map their papermill parameters onto these names.

    The defaults are the published transfer-learning protocol (profile ``full``: ImageNet weights, 224 px, the head
    on a frozen base, then the last stage fine-tuned, a fixed threshold of 0.5), so ``TrainConfig(arch=...)`` trains
    what ``./run_all.sh --profile full`` trains (tests/test_train.py holds them equal).
    """

    arch: str
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weights: str | dict | None = "imagenet"  # None, 'imagenet', a weights file (template) or {arch: one of these}
    train_base: bool = False
    finetune_from: str | None = None
    finetune_epochs: int = 5
    finetune_learning_rate: float = 1e-5
    augment: bool = True
    augment_strength: float = 1.0
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "plateau"
    early_stopping_patience: int | None = 5
    threshold_policy: str = "fixed"
    target_sensitivity: float = 0.95
    youden_delta: float = 0.02  # tolerance below max Youden's J of the 'youden_midpoint' policy
    seed: int = 42
    split_seed: int | None = None  # the seed of the patient split the frame came from (recorded, not used)
    precision: str = "auto"
    strategy: str = "auto"
    use_feature_cache: bool = True
    verbose: int = 2
    head_units: int = 1024
    dropout: float = 0.5
    plateau_factor: float = 0.2
    plateau_patience: int = 2
    min_learning_rate: float = 1e-7
    deterministic_ops: bool = True
    feature_cache_dir: str | None = None
    data_cache: str | None = "memory"
    latency_repeats: int = 20
    name: str | None = None
    fit_safeguards: bool = True  # fit the OOD detector and the calibration after training (a search skips them)
    stress_test: bool = True  # score the test images under the declared shifts after training (stress/shifts.yaml)

    def __post_init__(self):
        self.weights = _plain_weights(self.weights)
        for field in ("feature_cache_dir", "data_cache"):  # paths are kept as str (JSON, comparisons)
            if isinstance(getattr(self, field), os.PathLike):
                setattr(self, field, os.fspath(getattr(self, field)))
        values = dataclasses.asdict(self)
        params.check({name: value for name, value in values.items() if name in params.PARAMETERS},
                     source="TrainConfig")
        problems = [f"field '{name}' = {values[name]!r} {spec.problem(values[name])}: expected {spec.expected()} "
                    f"({spec.help})" for name, spec in OWN_FIELDS.items() if spec.problem(values[name])]
        if self.stress_test and not self.fit_safeguards:
            problems.append("stress_test=True needs fit_safeguards=True (each shifted image's OOD flag comes from the "
                            "run's detector); set stress_test=False too")
        if problems:
            raise params.ParameterError("invalid TrainConfig:\n  - " + "\n  - ".join(problems))

    @property
    def fast_head(self) -> bool:
        """Whether the first phase trains the head on cached features (frozen base, no augmentation)."""
        return self.use_feature_cache and not self.train_base and not self.augment

    def result_fields(self) -> dict:
        """The fields that determine the result (everything but presentation and caching)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in PRESENTATION_FIELDS}


def _plain_weights(weights):
    """`weights` with paths as str (also inside an {arch: weights} mapping), as JSON and params.check want."""
    if isinstance(weights, dict):
        return {arch: _plain_weights(choice) for arch, choice in weights.items()}
    return os.fspath(weights) if isinstance(weights, os.PathLike) else weights

