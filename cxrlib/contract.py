"""The project's facts, each defined once and free of TensorFlow: paths, classes, allowed values, the layout
of run and report directories.

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
STUDIES_DIR = REPO_ROOT / "studies"  # study plans as data (cxrlib.plan): seeds, policy, decision rule, expectations
# The declared acquisition shifts of the stress test (cxrlib.stress): kinds, strengths, the noise seed.
STRESS_SHIFTS_FILE = REPO_ROOT / "stress" / "shifts.yaml"
REPORTS_DIR = REPO_ROOT / "reports"
RUNS_DIR = REPO_ROOT / "runs"
DATA_ENV_VAR = "CXR_DATA_DIR"
DEFAULT_DATA_DIR = REPO_ROOT / "data" / "chest_xray"
# Where this workspace keeps the read-only data set, beside the repository: cxrlib.data.locate_data uses it when
# neither data_dir, $CXR_DATA_DIR nor data/chest_xray is given (so run_all.sh and JupyterLab find the same copy).
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "chest_xray"
# TensorFlow turns its oneDNN kernels on by default only on some Intel CPUs; elsewhere (e.g. AMD EPYC) they train
# ~1.6x faster (reports/benchmarks.md). Set where processes start (kernel spec, runner, command lines), never on
# import; an explicit value in the environment wins.
ONEDNN_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1"}


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

# --- the data set's classes and folders --------------------------------------------------------------------
CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # CLASS_NAMES[target]: target 1 is PNEUMONIA
POSITIVE_CLASS = CLASS_NAMES[1]
SPLITS = ("train", "val", "test")  # the Kaggle folders
REQUIRED_SPLITS = ("train", "test")  # the 16-image val folder may be missing
# The metrics the study reports for every model (mean ± SD across seeds, the headline table).
HEADLINE_METRICS = ("roc_auc", "accuracy", "sensitivity", "specificity")
# The model name and run.json "arch" of an ensemble of trained runs (cxrlib.compare.make_ensemble).
ENSEMBLE = "ensemble"


def targets_of(labels):
    """1 where a label (a pandas Series of class names) is PNEUMONIA, else 0: the ``target`` column."""
    return (labels == POSITIVE_CLASS).astype(int)


def model_of(arch: str, name: str) -> str:
    """The model a run replicates: its architecture, or for an ensemble (arch ``ENSEMBLE``) its name."""
    return name if arch == ENSEMBLE else arch


# --- run directories (cxrlib.train writes them, cxrlib.compare reads them) ---------------------------
MODEL_FILE = "model.keras"
LAST_WEIGHTS_FILE = "last.weights.h5"
STATE_FILE = "state.json"
RUN_RECORD_FILE = "run.json"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions.csv"
# The out-of-distribution detector of the best model (cxrlib.ood): fitted on train, its flag threshold on val.
OOD_FILE = "ood.npz"
GRADCAM_FILE = "gradcam.csv"  # optional record: each test image's coarse Grad-CAM (cxrlib.explain.record)
GRADCAM_SANITY_FILE = "gradcam_sanity.csv"  # optional record: its maps against a random model's (explain.sanity)
# Each test image's score and OOD flag under every declared acquisition shift (cxrlib.stress), written after training.
STRESS_FILE = "stress.csv"
STRESS_COLUMNS = ("shift", "strength", "path", "prob", "ood_score", "ood_flag")
# Validation images scored with their black border masked or cropped (cxrlib.stress.border): does the decision use it.
BORDER_FILE = "border.csv"
LOGS_DIR = "logs"
# The result settings run.json's `config` gained after runs were recorded, with the value every earlier run had:
# a record without one of them was trained with this value (not necessarily today's default). The trainer's resume
# check and the comparison's protocol check both read old records through it.
ADDED_RESULT_FIELDS = {"youden_delta": 0.02, "split_seed": None, "weight_decay": 0.0, "augment_strength": 1.0}
RUN_FILES = (MODEL_FILE, LAST_WEIGHTS_FILE, STATE_FILE, RUN_RECORD_FILE, HISTORY_FILE, PREDICTIONS_FILE, OOD_FILE,
             STRESS_FILE)
# The small files that fully describe a finished run's results; committed under reports/<profile>/runs/.
RECORD_FILES = (RUN_RECORD_FILE, HISTORY_FILE, PREDICTIONS_FILE, STRESS_FILE)
# Records a finished run may lack: runs trained before the stress test existed, or with TrainConfig(stress_test=False).
OPTIONAL_RECORD_FILES = (STRESS_FILE,)
PREDICTION_COLUMNS = ("path", "subset", "label", "target", "patient_id", "prob")
HISTORY_COLUMNS = ("epoch", "loss", "val_loss")  # required; metric columns follow the compiled metrics
REPLICATE_PREFIX = "seed-"
# The declared share of in-distribution images the OOD flag fires on: its threshold is the validation
# images' (1 - rate) quantile of the OOD score.
OOD_FLAG_RATE = 0.01

# --- report directories (reports/<profile>/: the runner and the notebooks write them) ------------------
RECORDS_DIR = "runs"  # reports/<profile>/runs/<arch>/seed-<k>/: each finished run's RECORD_FILES, committed
EXECUTED_DIR = "executed"  # the executed notebooks
FAILED_SUFFIX = "-failed"  # reports/<profile>-failed/ (and runs/<profile>-failed/ with --retrain): a failed run
RUNNER_RECORD_FILE = "runner.json"
RUN_LOG_FILE = "run.log"
INDEX_PAGE = "index.html"
COMPARISON_FILE = "comparison.csv"  # one row per model: mean/SD/min/max across seeds (notebook 04)
COMPARISON_MARKDOWN = "comparison.md"
COMPARISON_PAGE = "comparison.html"  # the runner's page of comparison.csv
SEEDS_FILE = "seeds.csv"  # one row per model, seed and threshold policy (notebook 04)
STUDY_FILE = "study.json"  # the study plan's decision and expectations as measured (notebook 04, for the index)
SEED_PAIRS_FIGURE = "seed_pairs.png"  # each replicate's paired values and the paired difference (notebook 04)
FACTORIAL_FILE = "factorial.json"  # a factorial study's answer, cells, contrasts and expectations (notebook 04)
FACTORIAL_FIGURE = "factorial.png"  # the factorial's cells and contrasts, every replicate (notebook 04)
FACTORIAL_CELLS_FILE = "factorial_cells.csv"  # every cell's test metrics per replicate (notebook 04)
ROC_FIGURE = "roc_curves.png"  # notebook 04's ROC curves, shown on the index
SUBGROUPS_FILE = "subgroups.csv"  # each model, replicate, subtype and stored-size group: share correct (notebook 04)
CALIBRATION_FILE = "calibration.csv"  # each model, replicate and output: test Brier score and ECE (notebook 04)

# --- console ---------------------------------------------------------------------------------------
# Set before TensorFlow starts (kernels, command lines): its C++ logging below errors is dropped.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2"}


def replicate_dir(runs_dir: str | os.PathLike, arch: str, seed: int) -> Path:
    """``<runs_dir>/<arch>/seed-<seed>``: the run directory of one model in one replicate."""
    return Path(runs_dir) / arch / f"{REPLICATE_PREFIX}{seed}"
