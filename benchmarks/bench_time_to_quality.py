"""bf16 parity and time to quality (docs/BF16_PARITY.md, committed before these runs), on validation only.

    python benchmarks/bench_time_to_quality.py run [--only ARCH/PRECISION/SEED]... [--max-runs N]   # resumable
    python benchmarks/bench_time_to_quality.py report [--no-write]                   # tables -> reports/benchmarks.md

`run` trains each planned run (the recipe's values exactly as reports/tune-cpu/trials.csv holds them, through the
search's training function on the search's split, only the precision changed) and writes its record into
reports/bf16-parity/: one row per run in runs.csv and one row per epoch in epochs.csv (validation balanced log-loss
and ROC-AUC, this process's CPU seconds and the wall seconds since training started). A run whose row exists is
skipped, so the work resumes across sittings (scripts/run_bf16_parity.sh commits after every run). It refuses a CPU
without native bf16 (the plan's runs are defined there). `report` computes the parity table (paired bf16 - float32
against the committed float32 search records, one-sided 95% t bound against the plan's margin) and the
time-to-quality table (CPU and wall seconds to the first epoch at or below the plan's target loss).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from _common import append_report, machine_line, markdown_table

from cxrlib.contract import REPO_ROOT  # noqa: E402
from cxrlib.files import write_atomic  # noqa: E402

RECORDS = REPO_ROOT / "reports" / "bf16-parity"
SEARCH_RECORD = REPO_ROOT / "reports" / "tune-cpu" / "trials.csv"
SEARCH = "cpu"
RECIPE = {"resnet50": "base", "densenet121": "tuned"}  # each architecture's confirmatory recipe, as the search names it
SEEDS = (1000, 1001, 1002)
BF16, FLOAT32 = "mixed_bfloat16", "float32"
# The plan's runs, in the order they run: each architecture's float32 check first, then its bf16 seeds.
PLANNED = [(arch, precision, seed) for arch in RECIPE
           for precision, seeds in ((FLOAT32, SEEDS[:1]), (BF16, SEEDS)) for seed in seeds]
MARGIN = 0.0127  # non-inferiority margin in validation balanced log-loss (docs/BF16_PARITY.md)
TARGET = {"resnet50": 0.1394, "densenet121": 0.1412}  # time-to-quality targets: shared-recipe float32 seed means
REPRODUCE_TOLERANCE = 1e-6  # the float32 check against the search record, same CPU kind
RUN_COLUMNS = ["arch", "precision", "seed", "value", "val_auc", "best_epoch", "epochs_run", "cpu_seconds",
               "wall_seconds", "cpu", "code", "finished"]
EPOCH_COLUMNS = ["arch", "precision", "seed", "epoch", "val_balanced_log_loss", "val_auc", "cpu_seconds",
                 "wall_seconds"]


def search_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """The float32 search records of each architecture's confirmatory recipe, one per seed: its reruns, and for the
    tuned recipe the search trial they reran (seed 1000); columns arch, seed, value, val_auc and the param_* values."""
    complete = trials[trials["state"] == "COMPLETE"]
    params = [column for column in trials.columns if column.startswith("param_")]
    rows = []
    for arch, recipe in RECIPE.items():
        reruns = complete[(complete["arch"] == arch) & (complete["kind"] == "rerun") & (complete["recipe"] == recipe)]
        rows.append(reruns)
        if recipe == "tuned":
            values = reruns[params].iloc[0]
            search = complete[(complete["arch"] == arch) & (complete["kind"] == "search")]
            rows.append(search[(search[params] == values).all(axis=1)])
    chosen = pd.concat(rows).rename(columns={"training_seed": "seed"})
    chosen["seed"] = chosen["seed"].astype(int)
    return chosen[["arch", "seed", "value", "val_auc", *params]].sort_values(["arch", "seed"]).reset_index(drop=True)


def recipe_values(reference: pd.DataFrame, arch: str) -> dict:
    """The recipe an architecture's float32 records trained, as the search's training function takes it."""
    row = reference[reference["arch"] == arch].iloc[0]
    values = {column.removeprefix("param_"): row[column] for column in reference.columns if column.startswith("param_")}
    return {name: int(value) if name in ("epochs", "image_size") else
            (value if isinstance(value, str) else float(value)) for name, value in values.items()}


def read_records(records: Path = RECORDS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs.csv, epochs.csv) of the records folder; empty tables when nothing ran yet."""
    runs_file, epochs_file = records / "runs.csv", records / "epochs.csv"
    runs = pd.read_csv(runs_file) if runs_file.is_file() else pd.DataFrame(columns=RUN_COLUMNS)
    epochs = pd.read_csv(epochs_file) if epochs_file.is_file() else pd.DataFrame(columns=EPOCH_COLUMNS)
    for table, path, columns in ((runs, runs_file, RUN_COLUMNS), (epochs, epochs_file, EPOCH_COLUMNS)):
        missing = [column for column in columns if column not in table.columns]
        if missing:
            sys.exit(f"error: {path} lacks columns {missing}; it is not this benchmark's record (move it away)")
    return runs, epochs


def has_run(runs: pd.DataFrame, arch: str, precision: str, seed: int) -> bool:
    """Whether the records hold a finished run of (arch, precision, seed)."""
    return bool(((runs["arch"] == arch) & (runs["precision"] == precision) & (runs["seed"] == seed)).any())


def append_records(records: Path, run_row: dict, epoch_rows: list[dict]) -> None:
    """Add one finished run to runs.csv and its epochs to epochs.csv (each written atomically, epochs first)."""
    runs, epochs = read_records(records)
    records.mkdir(parents=True, exist_ok=True)
    for table, rows, name in ((epochs, epoch_rows, "epochs.csv"), (runs, [run_row], "runs.csv")):
        grown = pd.concat([table, pd.DataFrame(rows)], ignore_index=True) if len(table) else pd.DataFrame(rows)
        write_atomic(records / name, lambda partial, frame=grown: frame.to_csv(partial, index=False))


def parse_only(texts: list[str]) -> list[tuple[str, str, int]]:
    """--only ARCH/PRECISION/SEED values, each one of the plan's runs."""
    chosen = []
    for text in texts:
        parts = text.split("/")
        run = (parts[0], parts[1], int(parts[2])) if len(parts) == 3 and parts[2].isdigit() else None
        if run not in PLANNED:
            sys.exit(f"error: --only {text!r} is not one of the plan's runs: "
                     f"{', '.join(f'{a}/{p}/{s}' for a, p, s in PLANNED)}")
        chosen.append(run)
    return chosen


def train_run(arch: str, precision: str, seed: int, values: dict) -> tuple[dict, list[dict]]:
    """Train one run on the search's split; (its runs.csv row, its epochs.csv rows)."""
    import keras

    from cxrlib import runtime
    from cxrlib.contract import RUNS_DIR
    from cxrlib.tune import load_search
    from cxrlib.tune.worker import VAL_OBJECTIVE, train_configuration, tuning_frame

    spec = load_search(SEARCH)
    frame, fingerprint = tuning_frame(spec)
    epoch_rows = []
    cpu_started, wall_started = time.process_time(), time.perf_counter()

    class EpochClock(keras.callbacks.Callback):
        """Per epoch: the validation loss and ROC-AUC, and the CPU and wall seconds since training started."""

        def on_epoch_end(self, epoch, logs=None):
            epoch_rows.append({"arch": arch, "precision": precision, "seed": seed, "epoch": epoch + 1,
                               "val_balanced_log_loss": float(logs[VAL_OBJECTIVE]), "val_auc": float(logs["val_auc"]),
                               "cpu_seconds": round(time.process_time() - cpu_started, 1),
                               "wall_seconds": round(time.perf_counter() - wall_started, 1)})

    run_dir = RUNS_DIR / "bf16-parity" / f"{arch}-{precision}-seed-{seed}"
    value, record = train_configuration(spec, arch, {**values, "precision": precision}, seed, frame, fingerprint,
                                        run_dir, [EpochClock()])
    run_row = {"arch": arch, "precision": record["precision"], "seed": seed, "value": value,
               "val_auc": record["best_val_auc"], "best_epoch": record["best_epoch"], "epochs_run": record["epochs_run"],
               "cpu_seconds": round(time.process_time() - cpu_started, 1),
               "wall_seconds": round(time.perf_counter() - wall_started, 1), "cpu": runtime.cpu_kind(),
               "code": runtime.version_text(runtime.code_version()),
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())}
    if run_row["precision"] != precision:
        sys.exit(f"error: asked for {precision}, the run trained in {run_row['precision']}; nothing recorded")
    return run_row, epoch_rows


def run(only: list[str], max_runs: int | None = None, records: Path = RECORDS) -> int:
    """Train the planned runs not yet recorded (or the --only ones, at most ``max_runs`` of them), recording each as
    it finishes; exit status 0, or 3 when every chosen run was recorded already."""
    from cxrlib import runtime

    if not runtime.has_fast_bf16():
        sys.exit(f"error: {runtime.cpu_kind()} has no native bf16 (AMX or AVX-512 BF16); the plan's runs "
                 "(docs/BF16_PARITY.md) are defined on a CPU that has it: run this on one")
    reference = search_runs(pd.read_csv(SEARCH_RECORD))
    pending = [planned for planned in parse_only(only) or PLANNED if not has_run(read_records(records)[0], *planned)]
    if not pending:
        print("every chosen run is recorded: python benchmarks/bench_time_to_quality.py report")
        return 3
    for arch, precision, seed in pending[:max_runs]:
        print(f"{arch}/{precision}/{seed}: training on {runtime.cpu_kind()}", flush=True)
        run_row, epoch_rows = train_run(arch, precision, seed, recipe_values(reference, arch))
        append_records(records, run_row, epoch_rows)
        print(f"{arch}/{precision}/{seed}: validation balanced log-loss {run_row['value']:.6f}, "
              f"{run_row['cpu_seconds']:.0f} CPU s, {run_row['wall_seconds']:.0f} s wall", flush=True)
    return 0


def reproduction_rows(runs: pd.DataFrame, reference: pd.DataFrame) -> list[list]:
    """The float32 runs against the search record of the same architecture and seed."""
    rows = []
    for row in runs[runs["precision"] == FLOAT32].itertuples():
        recorded = reference[(reference["arch"] == row.arch) & (reference["seed"] == row.seed)]["value"].iloc[0]
        change = row.value - recorded
        verdict = "reproduced" if abs(change) <= REPRODUCE_TOLERANCE else "not reproduced"
        rows.append([row.arch, row.seed, f"{recorded:.6f}", f"{row.value:.6f}", f"{change:+.2e}", verdict])
    return rows


def parity(runs: pd.DataFrame, reference: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per architecture with every planned bf16 seed: the paired differences bf16 - float32 (the search record), their
    mean, one-sided 95% upper bound and two-sided 95% interval (t, n - 1 degrees of freedom)."""
    column = {"value": "value", "val_auc": "val_auc"}[metric]
    bf16 = runs[runs["precision"] == BF16].set_index(["arch", "seed"])[column]
    float32 = reference.set_index(["arch", "seed"])[column]
    rows = []
    for arch in RECIPE:
        seeds = [seed for seed in SEEDS if (arch, seed) in bf16.index]
        if len(seeds) < 2:
            continue
        differences = np.array([bf16[(arch, seed)] - float32[(arch, seed)] for seed in seeds])
        mean, error, degrees = differences.mean(), stats.sem(differences), len(seeds) - 1
        rows.append({"arch": arch, "pairs": len(seeds), "differences": differences, "mean": mean,
                     "upper": mean + stats.t.ppf(0.95, degrees) * error,
                     "low": mean - stats.t.ppf(0.975, degrees) * error,
                     "high": mean + stats.t.ppf(0.975, degrees) * error,
                     "float32_sd": float32.loc[arch].loc[seeds].std(ddof=1)})
    return pd.DataFrame(rows)


def verdict(row) -> str:
    """The plan's words for one architecture's loss parity."""
    if row["pairs"] < len(SEEDS):
        return f"incomplete ({row['pairs']} of {len(SEEDS)} pairs)"
    if row["low"] > 0:
        return "bf16 worse (interval above 0)"
    return "non-inferior" if row["upper"] <= MARGIN else "not shown non-inferior"


def time_to_target(epochs: pd.DataFrame, target: float) -> pd.Series | None:
    """The first epoch row whose validation balanced log-loss is at most ``target``; None when none is."""
    reached = epochs[epochs["val_balanced_log_loss"] <= target].sort_values("epoch")
    return None if reached.empty else reached.iloc[0]


def time_rows(runs: pd.DataFrame, epochs: pd.DataFrame) -> list[list]:
    """Per run: epochs and CPU/wall seconds to the target, the whole run's, and its best loss."""
    rows = []
    for row in runs.itertuples():
        own = epochs[(epochs["arch"] == row.arch) & (epochs["precision"] == row.precision) & (epochs["seed"] == row.seed)]
        hit = time_to_target(own, TARGET[row.arch])
        reached = ("not reached", "–", "–") if hit is None else (
            f"epoch {int(hit['epoch'])}", f"{hit['cpu_seconds']:.0f}", f"{hit['wall_seconds']:.0f}")
        rows.append([row.arch, row.precision, row.seed, f"{TARGET[row.arch]:.4f}", *reached,
                     f"{row.cpu_seconds:.0f}", f"{row.wall_seconds:.0f}", f"{own['val_balanced_log_loss'].min():.4f}"])
    return rows


def report_body(runs: pd.DataFrame, epochs: pd.DataFrame, reference: pd.DataFrame) -> str:
    """The Markdown tables: float32 reproduction, loss and ROC-AUC parity, time to quality."""
    loss, auc = parity(runs, reference, "value"), parity(runs, reference, "val_auc")
    parts = [f"Plan: `docs/BF16_PARITY.md`; records: `reports/bf16-parity/` (runs.csv, epochs.csv); CPU kinds: "
             f"{', '.join(sorted(set(runs['cpu'])))}; validation images only (the search's split, seed 1000).", "",
             "Float32 check against the search record (`reports/tune-cpu/trials.csv`):", "",
             markdown_table(["model", "seed", "search record", "today", "change", "verdict"],
                            reproduction_rows(runs, reference)), "",
             f"Parity in validation balanced log-loss (bf16 − float32 record, per seed 1000/1001/1002; margin "
             f"{MARGIN}):", "",
             markdown_table(["model", "differences", "mean", "one-sided 95% upper bound", "95% interval",
                             "float32 seed SD", "verdict"],
                            [[row["arch"], " / ".join(f"{d:+.4f}" for d in row["differences"]), f"{row['mean']:+.4f}",
                              f"{row['upper']:+.4f}", f"{row['low']:+.4f} to {row['high']:+.4f}",
                              f"{row['float32_sd']:.4f}", verdict(row)] for _, row in loss.iterrows()]), "",
             "Validation ROC-AUC (bf16 − float32 record), descriptive:", "",
             markdown_table(["model", "differences", "mean", "95% interval"],
                            [[row["arch"], " / ".join(f"{d:+.4f}" for d in row["differences"]), f"{row['mean']:+.4f}",
                              f"{row['low']:+.4f} to {row['high']:+.4f}"] for _, row in auc.iterrows()]), "",
             "Time to quality (first epoch at or below the target validation balanced log-loss; CPU seconds of the "
             "training process, wall seconds since training started):", "",
             markdown_table(["model", "precision", "seed", "target", "reached", "CPU s to target", "wall s to target",
                             "CPU s, whole run", "wall s, whole run", "best loss"], time_rows(runs, epochs))]
    return "\n".join(parts)


def report(write: bool, records: Path = RECORDS) -> int:
    """Print the tables (and append them to reports/benchmarks.md unless --no-write)."""
    runs, epochs = read_records(records)
    if runs.empty:
        sys.exit(f"error: {records / 'runs.csv'} holds no run yet; train them first: "
                 "python benchmarks/bench_time_to_quality.py run")
    body = report_body(runs, epochs, search_runs(pd.read_csv(SEARCH_RECORD)))
    append_report("bf16 parity and time to quality (validation only)", body, machine_line(), write=write)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run or report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train the plan's runs not yet recorded")
    run_parser.add_argument("--only", action="append", default=[], metavar="ARCH/PRECISION/SEED")
    run_parser.add_argument("--max-runs", type=int, default=None, help="train at most this many, then stop")
    report_parser = commands.add_parser("report", help="the parity and time-to-quality tables")
    report_parser.add_argument("--no-write", action="store_true", help="print only; do not append to benchmarks.md")
    args = parser.parse_args(argv)
    return run(args.only, args.max_runs) if args.command == "run" else report(not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
