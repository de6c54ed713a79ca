"""What this machine has (CPU cores, a GPU, ImageNet weights), found without starting TensorFlow in the runner.

A GPU device file is a cheap first check; only when one exists does ``look(probe=True)`` ask TensorFlow, in a
child process (``python -m cxrlib.runner.machine``), whether it sees the GPU and can have the ImageNet weights.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cxrlib import runtime
from cxrlib.runner import RunError
from cxrlib.runner.console import quiet_environment

# Device files of NVIDIA (CUDA), AMD (ROCm) and WSL2 GPUs: without one, TensorFlow sees no GPU on Linux.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


@dataclass(frozen=True)
class Machine:
    """The facts the runner needs: cores, a GPU, and (when probed) whether ImageNet weights can be had."""

    cores: int
    gpu: bool
    imagenet_weights: bool | None = None  # None: not checked
    vector: str | None = None  # the CPU's widest vector extension (runtime.VECTOR_FLAGS), e.g. avx512_bf16

    def describe(self) -> str:
        """E.g. ``2-core CPU with avx512_bf16, no GPU``."""
        cpu = f"{self.cores}-core CPU" + (f" with {self.vector}" if self.vector else "")
        return f"{cpu}, {'a GPU' if self.gpu else 'no GPU'}"


def cpu_cores() -> int:
    """The cores this process may use (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gpu_device_present() -> bool:
    """Cheap: on Linux, whether a GPU device file or ``nvidia-smi`` exists; elsewhere assume there may be one."""
    if not sys.platform.startswith("linux"):
        return True
    return any(Path(path).exists() for path in GPU_DEVICE_FILES) or shutil.which("nvidia-smi") is not None


def look(probe: bool = False, timeout: float = 300) -> Machine:
    """This machine; with ``probe``, TensorFlow's own view of the GPU and the ImageNet weights (child process)."""
    cores, gpu, vector = cpu_cores(), gpu_device_present(), runtime.widest_vector_flag()
    if not (probe and gpu):
        return Machine(cores, gpu, vector=vector)
    command = [sys.executable, "-m", "cxrlib.runner.machine"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True,
                                env=quiet_environment())
        found = json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        detail = getattr(err, "stderr", "") or err
        raise RunError(f"could not ask TensorFlow whether it sees a GPU ({' '.join(command)}: {detail}); "
                       "pass --profile cpu or --profile full to skip this check") from err
    return Machine(cores, found["gpus"] > 0, found["imagenet_weights"], vector)


def imagenet_weights_available(timeout: float = 3.0) -> bool:
    """True when every backbone's ImageNet weights are in the Keras cache or their download host answers."""
    from cxrlib.models import IMAGENET_WEIGHTS, keras_models_dir  # imports TensorFlow: only in the probe

    if all((keras_models_dir() / file_name).is_file() for _, file_name, _ in IMAGENET_WEIGHTS.values()):
        return True
    hosts = {urlparse(base_url).hostname for base_url, _, _ in IMAGENET_WEIGHTS.values()}
    try:
        for host in hosts:
            socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def tensorflow_view() -> dict:
    """What TensorFlow in this process sees: the number of GPUs, and whether ImageNet weights can be had."""
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    return {"gpus": gpus, "imagenet_weights": imagenet_weights_available() if gpus else None}


if __name__ == "__main__":
    print(json.dumps(tensorflow_view()))
