"""The README's test command in one process (`./run_tests.sh -n 0`) against its default, one pytest-xdist worker
per core (`./run_tests.sh`), on the same test files, alternating, `--rounds` times each.

Reports wall time and CPU seconds (user + system of the whole command and everything it started) per mode, and the
wall-time ratio. Run it with nothing else on the machine: two cores shared with a training run measure the neighbour.
`--quick` times a few files of mixed cost instead of the whole suite.
"""
import argparse
import resource
import subprocess

import numpy as np

from _common import REPO_ROOT, Stopwatch, append_report, machine_line, markdown_table

MODES = {"one process (-n 0)": ["-n", "0"], "xdist, one worker per core (default)": []}
QUICK_FILES = ["tests/test_train.py", "tests/test_ood.py", "tests/test_predict.py", "tests/test_runner.py",
               "tests/test_evaluate.py", "tests/test_data_pipeline.py"]


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(extra: list[str], files: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, pytest's last line) of `./run_tests.sh -q EXTRA FILES`; the run must pass."""
    cpu = children_cpu_seconds()
    with Stopwatch() as watch:
        result = subprocess.run(["./run_tests.sh", "-q", "-p", "no:cacheprovider", *extra, *files], cwd=REPO_ROOT,
                                capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"./run_tests.sh {' '.join(extra + files)} failed:\n{result.stdout[-3000:]}")
    return watch.seconds, children_cpu_seconds() - cpu, result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode, alternating (default 1)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_FILES)}")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to reports/benchmarks.md")
    args = parser.parse_args()
    files = QUICK_FILES if args.quick else []
    machine = machine_line()  # before the runs: its load average says whether the machine was quiet
    results = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode, extra in MODES.items():
            results[mode].append(timed_run(extra, files))
            print(mode, results[mode][-1])
    serial = np.median([wall for wall, _, _ in results["one process (-n 0)"]])
    rows = [[mode, " / ".join(f"{wall / 60:.1f}" for wall, _, _ in runs),
             f"{np.median([cpu for _, cpu, _ in runs]) / 60:.1f}",
             f"{serial / np.median([wall for wall, _, _ in runs]):.2f}x", runs[-1][2]]
            for mode, runs in results.items()]
    table = markdown_table(["mode", "wall min per round", "CPU min (median)", "speed-up (wall)", "pytest said"], rows)
    scope = "files: " + ", ".join(QUICK_FILES) if args.quick else "the whole suite"
    append_report("Test suite: one process vs one xdist worker per core", f"{scope}\n\n{table}", machine,
                  write=not args.no_write)


if __name__ == "__main__":
    main()
