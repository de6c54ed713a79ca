"""Runtime facts for run.json and notebooks: precision choice, devices, library versions, peak memory.

TensorFlow and Keras are imported inside the functions that need them, so that the batch runner can use
``peak_memory_mb`` without starting TensorFlow.
"""
import os
import platform
import resource
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import psutil

from cxrlib.contract import REPO_ROOT

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
LIBRARIES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "scipy", "statsmodels",
             "matplotlib", "seaborn", "pillow", "papermill", "cxrlib")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's answer elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The vector extensions that separate this project's CPU kinds (results are deterministic within a kind).
VECTOR_FLAGS = ("avx512_bf16", "avx512f", "avx2")


def widest_vector_flag() -> str:
    """The CPU's widest vector extension of VECTOR_FLAGS ('avx512_bf16', 'avx512f', 'avx2'), else 'no avx2'."""
    return next((flag for flag in VECTOR_FLAGS if flag in cpu_flags()), "no avx2")


def cpu_kind() -> str:
    """The CPU model and its widest vector extension, e.g. 'AMD EPYC (avx512_bf16)': what a record names as 'CPU'."""
    return f"{cpu_model()} ({widest_vector_flag()})"


def gpu_details() -> list[dict]:
    """Name and compute capability of each visible GPU (listing does not initialise the devices)."""
    import tensorflow as tf

    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append({"name": details.get("device_name", gpu.name),
                     "compute_capability": list(details.get("compute_capability", ()))})
    return gpus


def has_fast_bf16() -> bool:
    """Whether bfloat16 runs natively: a GPU with compute capability >= 8.0, or an AMX / AVX-512-bf16 CPU."""
    gpus = gpu_details()
    if gpus:
        return all(tuple(gpu["compute_capability"]) >= (8, 0) for gpu in gpus)
    return bool(set(BF16_CPU_FLAGS) & cpu_flags())


def choose_precision(requested: str = "auto") -> str:
    """The Keras dtype policy name to train with: `mixed_bfloat16` where bf16 is native, else `float32`."""
    if requested == "auto":
        return "mixed_bfloat16" if has_fast_bf16() else "float32"
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r} is not one of {('auto',) + PRECISIONS}")
    return requested


def apply_precision(name: str) -> str:
    """Set the global Keras dtype policy (affects models built afterwards) and return its name."""
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r} is not one of {PRECISIONS}")
    import keras

    keras.config.set_dtype_policy(name)
    return name


def device_info() -> dict:
    """The hardware this process runs on: CPU model and cores, bf16 support, memory, GPUs."""
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_kind": cpu_kind(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_bf16": sorted(set(BF16_CPU_FLAGS) & cpu_flags()),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpu_details(),
    }


def library_versions() -> dict:
    """Versions of python and of every library whose behaviour shapes the numbers."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def peak_memory_mb(children: bool = False) -> float:
    """Peak resident memory so far, in MB, of this process or (``children``) of its largest finished child.

    The runner passes ``children=True`` after its notebook kernels have exited: their peak is the run's.
    ru_maxrss is KB on Linux, bytes on macOS.
    """
    peak = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def describe_environment() -> dict:
    """Everything run.json and the notebooks report about where and how a run executes."""
    import keras

    return {
        "versions": library_versions(),
        "device": device_info(),
        "precision": keras.config.dtype_policy().name,
        "peak_memory_mb": peak_memory_mb(),
    }


def _git(repo: Path, *args: str) -> str:
    """git's stdout in ``repo``; GIT_OPTIONAL_LOCKS=0: only look, never refresh the repository's index."""
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=True,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout.strip()


def code_version(repo: Path = REPO_ROOT) -> dict:
    """The commit the repository is at and whether tracked files outside reports/ differ from it (taken when a run
    starts; reports are outputs, e.g. a running search's record, not code)."""
    try:
        return {"commit": _git(repo, "rev-parse", "--short", "HEAD"),
                "modified": bool(_git(repo, "status", "--porcelain", "--untracked-files=no", "--", ".",
                                      ":(exclude)reports"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "modified": False}


def adding_commit(path: str, repo: Path = REPO_ROOT) -> dict | None:
    """The commit that first added ``path`` (a plan: it must predate the runs it governs): short hash and date;
    None when git or the history is unavailable (e.g. a shallow clone without it)."""
    try:
        lines = _git(repo, "log", "--diff-filter=A", "--format=%h %ad", "--date=short", "--", path).splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not lines:
        return None
    commit, date = lines[-1].split()
    return {"commit": commit, "date": date}


def version_text(version: dict) -> str:
    """``abc1234`` or ``abc1234 (modified)``: the code a run started from."""
    return version["commit"] + (" (modified)" if version.get("modified") else "")
