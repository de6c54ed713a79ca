"""Shared helpers for the benchmark scripts: machine facts, timing, and the Markdown report."""
import datetime
import os
import platform
import shlex
import sys
import time

import numpy as np
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from cxrlib.contract import REPO_ROOT, REPORTS_DIR, configured_data_dir, targets_of  # noqa: E402

REPORT_PATH = REPORTS_DIR / "benchmarks.md"
DATA_DIR = configured_data_dir()


def machine_line() -> str:
    """One line naming the CPU, core count, bf16 support, load, and library versions."""
    import keras
    import tensorflow as tf

    from cxrlib import runtime

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    native = "native bf16" if runtime.has_fast_bf16() else "no native bf16 (no AMX / AVX-512 BF16)"
    return (
        f"{runtime.cpu_model()}, {os.cpu_count()} cores, {native}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (TF default)')}, load average at start {load} "
        f"(shared with other jobs: absolute numbers are noisy, ratios from interleaved rounds are the result); "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )


def command_line() -> str:
    """The command that ran this script, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO_ROOT)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def append_report(title: str, body: str, machine: str, write: bool = True) -> None:
    """Print a dated section (title, machine, command, body); append it to reports/benchmarks.md if `write`."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = f"\n## {title} ({stamp})\n\nMachine: {machine}\n\nCommand: `{command_line()}`\n\n{body}\n"
    print(section)
    if write:
        REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
        with REPORT_PATH.open("a") as report:
            report.write(section)


class Stopwatch:
    """Wall-clock timer used as a context manager; `.seconds` holds the elapsed time."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def training_frame(limit: int | None, seed: int = 0):
    """Rows (path, label, target) of the Kaggle train split from MANIFEST.csv, a seeded sample of `limit`."""
    import pandas as pd

    manifest = pd.read_csv(DATA_DIR / "MANIFEST.csv")
    frame = manifest[manifest["split"] == "train"].copy()
    frame["path"] = [str(DATA_DIR / s / l / f) for s, l, f in zip(frame["split"], frame["label"], frame["filename"])]
    frame["target"] = targets_of(frame["label"])
    if limit and limit < len(frame):
        frame = frame.sample(n=limit, random_state=seed)
    return frame[["path", "label", "target"]].reset_index(drop=True)


def fit_rates(model, data, steps: int, batch_size: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process) over `steps` fit steps.

    The model's train function must already be traced. On a shared machine the CPU-second rate
    is the steadier measure: other jobs' load stretches wall time but not this process's CPU time.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    images = steps * batch_size
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def rate_rows(results: dict, baseline: str) -> list[list]:
    """Table rows from name -> list of (wall, cpu) rates: medians, per-round wall rates, ratios to `baseline`."""
    base_wall = np.median([w for w, _ in results[baseline]])
    base_cpu = np.median([c for _, c in results[baseline]])
    rows = []
    for name, rates in results.items():
        wall = np.median([w for w, _ in rates])
        cpu = np.median([c for _, c in rates])
        rounds = " / ".join(f"{w:.1f}" for w, _ in rates)
        rows.append([name, f"{wall:.1f}", rounds, f"{wall / base_wall:.2f}x", f"{cpu:.2f}", f"{cpu / base_cpu:.2f}x"])
    return rows


RATE_HEADER = ["img/s wall (median)", "wall per round", "wall ratio", "img per CPU-s", "CPU-s ratio"]
