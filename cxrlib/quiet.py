"""Command lines that start TensorFlow keep its C++ log lines off the console.

``contract.QUIET_ENV`` (the runner's setting) drops TensorFlow's C++ warnings, but TensorFlow 2.21 writes its
start-up lines (oneDNN, CUDA drivers, cuInit) through absl before that setting is read, so stderr is also
passed through a filter that drops C++ log lines below fatal; everything else reaches the console as written.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Iterator

from cxrlib.contract import ONEDNN_ENV, QUIET_ENV

# absl lines ("I0000 00:00:1796525415.68 5973 port.cc:153] ..."), TensorFlow's older format
# ("2025-09-17 14:44:05.157831: I external/...") and absl's note that it is not initialised; fatal (F) lines stay.
NATIVE_LOG_LINE = re.compile(rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
                             rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] "
                             rb"|WARNING: All log messages before absl::InitializeLog\(\) is called")


def shown(pieces: list[bytes]) -> bytes:
    """The pieces of stderr (each ending in a newline or carriage return) that are not C++ log lines."""
    return b"".join(piece for piece in pieces if not NATIVE_LOG_LINE.match(piece))


def forward(reader: int, console: int) -> None:
    """Copy the pipe `reader` to the file descriptor `console` line by line, without C++ log lines, until it closes."""
    with os.fdopen(reader, "rb", buffering=0) as pipe, open(console, "wb", closefd=False) as out:
        pending = b""
        while chunk := pipe.read(65536):
            *complete, pending = re.split(rb"(?<=[\r\n])", pending + chunk)  # progress bars redraw with \r
            out.write(shown(complete))
            out.flush()
        out.write(shown([pending]))


@contextlib.contextmanager
def tensorflow_quietly() -> Iterator[None]:
    """Set the environment a command line starts TensorFlow with (QUIET_ENV, ONEDNN_ENV; values already set win)
    and pass this process's stderr (fd 2) through ``forward``."""
    for name, value in {**QUIET_ENV, **ONEDNN_ENV}.items():
        os.environ.setdefault(name, value)
    sys.stderr.flush()
    console = os.dup(2)
    reader, writer = os.pipe()
    os.dup2(writer, 2)
    os.close(writer)
    forwarder = threading.Thread(target=forward, args=(reader, console), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(console, 2)  # closes the pipe's last write end: the forwarder reads the rest and stops
        forwarder.join()
        os.close(console)
