"""The project's facts, each defined once and free of TensorFlow: paths, allowed values, run-directory layout.

Every other module (and the tests, benchmarks and notebooks) imports these names instead of restating them;
docs/ARCHITECTURE.md describes what the files hold.
"""
from __future__ import annotations

import os
from pathlib import Path

from .backbones import BACKBONES

# --- repository and data locations -------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PROFILES_DIR = REPO_ROOT / "profiles"
SEARCHES_DIR = REPO_ROOT / "searches"  # hyperparameter search declarations (cxrlib.tune)
REPORTS_DIR = REPO_ROOT / "reports"
RUNS_DIR = REPO_ROOT / "runs"
DATA_ENV_VAR = "CXR_DATA_DIR"
DEFAULT_DATA_DIR = REPO_ROOT / "data" / "chest_xray"
# Where this workspace keeps the read-only data set, beside the repository (tests, CI, benchmarks).
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "chest_xray"


def configured_data_dir() -> Path:
    """The data folder tests and benchmarks use: $CXR_DATA_DIR, else the shared copy beside the repository."""
    return Path(os.environ.get(DATA_ENV_VAR) or SHARED_DATA_DIR)


def repo_relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root (``../`` where it lies outside), as rendered pages show paths."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), REPO_ROOT)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return str(path)


# --- allowed values ----------------------------------------------------------------------------------
ARCHS = tuple(BACKBONES)  # the backbone registry (cxrlib/backbones.py)
# Files keras.Model.load_weights reads; a `weights` path (or {arch} template) must end in one of these.
WEIGHTS_FILE_SUFFIXES = (".h5", ".hdf5", ".keras", ".weights.json")
LR_SCHEDULES = ("plateau", "cosine")
STRATEGIES = ("auto", "mirrored", "multiworker", "none")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
PRECISION_CHOICES = ("auto", *PRECISIONS)
# How the validation split sets the decision threshold (cxrlib.evaluate.choose_threshold).
THRESHOLD_POLICIES = ("fixed", "youden_midpoint", "youden", "sensitivity")
CLASS_NAMES = ("NORMAL", "PNEUMONIA")

# --- run directories (cxrlib.train writes them, cxrlib.compare reads them) ---------------------------
MODEL_FILE = "model.keras"
LAST_WEIGHTS_FILE = "last.weights.h5"
STATE_FILE = "state.json"
RUN_RECORD_FILE = "run.json"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions.csv"
LOGS_DIR = "logs"
RUN_FILES = (MODEL_FILE, LAST_WEIGHTS_FILE, STATE_FILE, RUN_RECORD_FILE, HISTORY_FILE, PREDICTIONS_FILE)
# The small files that fully describe a finished run's results; committed under reports/<profile>/runs/.
RECORD_FILES = (RUN_RECORD_FILE, HISTORY_FILE, PREDICTIONS_FILE)
PREDICTION_COLUMNS = ("path", "subset", "label", "target", "patient_id", "prob")
HISTORY_COLUMNS = ("epoch", "loss", "val_loss")  # required; metric columns follow the compiled metrics
REPLICATE_PREFIX = "seed-"


def replicate_dir(runs_dir: str | os.PathLike, arch: str, seed: int) -> Path:
    """``<runs_dir>/<arch>/seed-<seed>``: the run directory of one model in one replicate."""
    return Path(runs_dir) / arch / f"{REPLICATE_PREFIX}{seed}"
