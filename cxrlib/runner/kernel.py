"""The notebooks' Jupyter kernel as the runner starts it: encrypted transport, its own output into the run log.

nbclient builds the kernel manager from the class given as ``kernel_manager_class``. The kernel's process
output (TensorFlow's C++ logs, which cannot all be switched off, and the kernel's own warnings) is read
from a pipe and logged to ``cxrlib.runner.kernel``: run.log keeps it, the terminal shows it only with
--verbose. What the notebook's code prints still reaches papermill (and the report) as cell output.
"""
from __future__ import annotations

import subprocess
import threading
from typing import IO

import zmq
from jupyter_client import AsyncKernelManager

from cxrlib.runner.console import KERNEL_LOG, quiet_environment, tensorflow_environment

# C-level output stays out of the cells (and so out of the reports): the kernel process's stdout goes to our pipe.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]


def forward_lines(stream: IO[bytes]) -> None:
    """Log each line of a kernel's process output until the kernel exits."""
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if line:
                KERNEL_LOG.info(line)


class LoggedKernelManager(AsyncKernelManager):
    """A kernel with CurveZMQ transport encryption whose process output goes to the log (--verbose runs)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if zmq.has("curve"):  # used when the kernelspec declares Curve support; else the kernel warns of plain TCP
            self.transport_encryption = "auto"

    def environment(self) -> dict[str, str]:
        """The kernel's environment variables (``ONEDNN_ENV`` where unset)."""
        return tensorflow_environment()

    async def start_kernel(self, **kw) -> None:
        """Start the kernel with its stdout and stderr on a pipe that a thread forwards to the log."""
        kw.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.environment())
        await super().start_kernel(**kw)
        threading.Thread(target=forward_lines, args=(self.provisioner.process.stdout,), daemon=True).start()


class QuietKernelManager(LoggedKernelManager):
    """``LoggedKernelManager`` with TensorFlow's C++ logging cut to errors (the default, without --verbose)."""

    def environment(self) -> dict[str, str]:
        """The kernel's environment variables, with ``QUIET_ENV``."""
        return quiet_environment()
