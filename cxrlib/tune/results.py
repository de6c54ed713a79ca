"""What a search found, as tables: every trial (trials.csv, committed), the best configurations, the reruns.

Read from any storage; nothing here trains or reads images. Epochs count from 1 in these tables, as in Keras' log,
the trial's `epochs_run` and the pruner's steps; the journal's `best_epoch` attribute (from the trial's run.json)
counts from 0.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from optuna.trial import TrialState

from cxrlib.files import write_atomic

from . import ledger
from .spec import SearchSpec

TRIALS_FILE = "trials.csv"
TRIAL_COLUMNS = ("arch", "kind", "number", "state", "value", "recipe", "training_seed", "epochs_run", "best_epoch",
                 "val_auc", "cpu_seconds", "wall_seconds", "cpu", "code", "started", "failure", "retry_of")


def trials_frame(spec: SearchSpec, storage) -> pd.DataFrame:
    """One row per trial of every study of the search (search and reruns), with its parameters and costs."""
    rows = []
    for arch in spec.archs:
        for reruns in (False, True):
            study = ledger.load(spec, storage, arch, reruns=reruns)
            for trial in study.get_trials(deepcopy=False):
                attrs = trial.user_attrs
                values = trial.params if not reruns else attrs.get(ledger.VALUES, {})
                rows.append({"arch": arch, "kind": attrs.get(ledger.KIND, ledger.RERUN if reruns else ledger.SEARCH),
                             "number": trial.number, "state": trial.state.name, "value": trial.value,
                             "recipe": attrs.get(ledger.RECIPE), "training_seed": attrs.get(ledger.TRAINING_SEED),
                             "started": trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
                             **{name: attrs.get(name) for name in TRIAL_COLUMNS if name in attrs
                                and name not in ("kind", "recipe", "training_seed")},
                             **{f"param_{name}": value for name, value in values.items()}})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    if "best_epoch" in frame:
        frame["best_epoch"] = frame["best_epoch"] + 1  # run.json counts from 0; epochs_run and the page from 1
    columns = [c for c in TRIAL_COLUMNS if c in frame] + sorted(c for c in frame if c.startswith("param_"))
    return frame[columns]


def write_trials(spec: SearchSpec, storage, directory: Path | None = None) -> Path:
    """Write trials.csv (atomically) into the search's record directory; returns its path."""
    table = trials_frame(spec, storage)
    return write_atomic(Path(directory or spec.record_dir) / TRIALS_FILE, lambda partial: table.to_csv(partial, index=False))


def status_lines(spec: SearchSpec, storage) -> list[str]:
    """Where the search stands, one line per architecture."""
    lines = []
    for arch in spec.archs:
        study = ledger.load(spec, storage, arch)
        search = ledger.progress(study)
        reruns = ledger.progress(ledger.load(spec, storage, arch, reruns=True))
        pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
        best = min((t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))), default=None)
        best_text = f"best {spec.objective} {best:.4f}" if best is not None else "no complete trial yet"
        lines.append(f"{arch}: {search.counted}/{spec.trials_per_arch} trials counted ({pruned} pruned, "
                     f"{search.running} running), {best_text}; reruns {reruns.counted}/{ledger.rerun_count(spec)}")
    return lines
