"""The search's books in Optuna storage: the budget, lost trials run again, the reruns, and what to do next.

Any number of workers (processes, machines) may share one storage. The rules that keep the count exact:
- a trial counts when it ends COMPLETE or PRUNED; FAIL is reserved for trials that did not happen (lost,
  over the budget, a duplicate), so they never count;
- the trials that count are the first `trials_per_arch` non-FAIL trials by number: a worker that asks for a
  trial beyond them marks it FAIL ("over budget") before training anything;
- a RUNNING trial whose worker is gone (same machine: its process is dead or the machine rebooted; any
  machine: no news for `stale_after_minutes`) is marked FAIL and its configuration queued again, so an
  interrupted trial is neither lost nor counted twice.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from .spec import SearchSpec

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
SEARCH, RERUN = "search", "rerun"
RECIPES = ("tuned", "base")  # reruns: the search's best configuration, and the base profile's recipe
# User attributes of a trial (the record's audit trail); a rerun carries KIND to VALUES from the moment it is queued.
WORKER, HEARTBEAT, FAILURE, RETRY_OF = "worker", "heartbeat", "failure", "retry_of"
KIND, RECIPE, TRAINING_SEED, VALUES = "kind", "recipe", "training_seed", "values"


def open_storage(spec: SearchSpec, url: str | None = None) -> optuna.storages.BaseStorage:
    """The search's storage: `url` (any Optuna storage URL, or a journal file path), else the committed journal."""
    if url and "://" in url:
        return optuna.storages.get_storage(url)
    path = Path(url) if url else spec.journal
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def boot_id() -> str:
    """This machine's current boot (Linux); a trial started under another boot of this host has lost its worker."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def worker_id() -> str:
    """host/boot/pid of this process, stored on each trial it runs."""
    return f"{socket.gethostname()}/{boot_id()}/{os.getpid()}"


def _worker_gone(trial: FrozenTrial, stale_after_s: float, now: float) -> bool:
    """Whether a RUNNING trial's worker has stopped (see the module docstring)."""
    host, boot, pid = (trial.user_attrs.get(WORKER) or "//").split("/")
    if host == socket.gethostname() and boot == boot_id() and pid.isdigit():
        if int(pid) == os.getpid():
            return True  # this process runs one trial at a time: a RUNNING trial of its own was left behind
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    elif host == socket.gethostname() and boot not in ("", boot_id()):
        return True  # started before this machine rebooted
    last_news = max(trial.datetime_start.timestamp() if trial.datetime_start else 0.0,
                    float(trial.user_attrs.get(HEARTBEAT, 0.0)))
    return now - last_news > stale_after_s


def fail_lost_trials(study: optuna.Study, spec: SearchSpec, log=print) -> int:
    """Mark RUNNING trials whose worker is gone FAIL and queue their configuration again; returns how many."""
    storage, now, lost = study._storage, time.time(), 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _worker_gone(trial, 60 * spec.stale_after_minutes, now):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, FAILURE, f"lost: worker {trial.user_attrs.get(WORKER)} stopped")
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first, or the trial just ended
        attrs = {k: v for k, v in trial.user_attrs.items() if k in (KIND, RECIPE, TRAINING_SEED, VALUES)}
        study.enqueue_trial(trial.params, user_attrs={**attrs, RETRY_OF: trial.number})
        log(f"{study.study_name}: trial {trial.number} was lost ({trial.user_attrs.get(WORKER)}); queued again")
        lost += 1
    return lost


@dataclass(frozen=True)
class Progress:
    """Counts of one study."""

    counted: int  # COMPLETE + PRUNED
    running: int
    waiting: int


def progress(study: optuna.Study) -> Progress:
    """How many trials of a study counted, run and wait."""
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    return Progress(sum(state in COUNTED for state in states), states.count(TrialState.RUNNING),
                    states.count(TrialState.WAITING))


def beyond_budget(study: optuna.Study, trial_number: int, budget: int) -> bool:
    """Whether `budget` non-FAIL trials precede this one, so it must not run."""
    earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial_number and t.state != TrialState.FAIL]
    return len(earlier) >= budget


def duplicate_rerun(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Whether a non-FAIL rerun of the same recipe and seed precedes this one (two workers queued the list)."""
    key = (trial.user_attrs.get(RECIPE), trial.user_attrs.get(TRAINING_SEED))
    return key[0] is None or any(
        t.number < trial.number and t.state != TrialState.FAIL
        and (t.user_attrs.get(RECIPE), t.user_attrs.get(TRAINING_SEED)) == key
        for t in study.get_trials(deepcopy=False))


def load(spec: SearchSpec, storage, arch: str, reruns: bool = False) -> optuna.Study:
    """One architecture's search study (or its reruns), created on first use; minimised."""
    name = spec.study_name(arch, reruns)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # not created yet (load_if_exists alone would log a create attempt on every call)
        return optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)


def best_values(study: optuna.Study) -> dict:
    """The searched values of the best COMPLETE trial (lowest objective; ties: the earlier trial)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ValueError(f"{study.study_name} has no complete trial: no best configuration yet")
    return dict(min(complete, key=lambda t: (t.value, t.number)).params)


def queue_reruns(spec: SearchSpec, storage, arch: str) -> optuna.Study:
    """The reruns study of `arch`, its list queued once the architecture's search has counted its budget.

    Reruns: the best configuration with each rerun seed (the search trained it with training_seed), and the
    base profile's recipe with training_seed and each rerun seed.
    """
    reruns = load(spec, storage, arch, reruns=True)
    if reruns.get_trials(deepcopy=False):
        return reruns
    tuned = best_values(load(spec, storage, arch))
    plan = [("tuned", seed, tuned) for seed in spec.rerun_seeds]
    plan += [("base", seed, spec.base_recipe()) for seed in (spec.training_seed, *spec.rerun_seeds)]
    for recipe, seed, values in plan:
        reruns.enqueue_trial({}, user_attrs={KIND: RERUN, RECIPE: recipe, TRAINING_SEED: seed, VALUES: values})
    return reruns


@dataclass(frozen=True)
class Task:
    """What a worker should do next: a search trial or a queued rerun of one architecture."""

    kind: str  # SEARCH or RERUN
    arch: str


def next_task(spec: SearchSpec, storage, log=print) -> Task | None:
    """The next trial to start, or None when nothing is left to start (done, or the rest runs elsewhere).

    Search trials come first, given to the architecture with the fewest started, so every architecture's
    search sees the same mix of machines and interruptions; an architecture's reruns follow its search.
    """
    searches = {arch: load(spec, storage, arch) for arch in spec.archs}
    for study in searches.values():
        fail_lost_trials(study, spec, log)
    counts = {arch: progress(study) for arch, study in searches.items()}
    open_archs = [arch for arch in spec.archs if counts[arch].counted + counts[arch].running < spec.trials_per_arch]
    if open_archs:
        arch = min(open_archs, key=lambda a: (counts[a].counted + counts[a].running, spec.archs.index(a)))
        return Task(SEARCH, arch)
    for arch in spec.archs:
        if counts[arch].counted < spec.trials_per_arch:
            continue  # its last trials still run elsewhere
        reruns = queue_reruns(spec, storage, arch)
        fail_lost_trials(reruns, spec, log)
        if progress(reruns).waiting:
            return Task(RERUN, arch)
    return None


def is_finished(spec: SearchSpec, storage) -> bool:
    """Whether every architecture counted its budget and every queued rerun counted."""
    for arch in spec.archs:
        if progress(load(spec, storage, arch)).counted < spec.trials_per_arch:
            return False
        if progress(load(spec, storage, arch, reruns=True)).counted < rerun_count(spec):
            return False
    return True


def rerun_count(spec: SearchSpec) -> int:
    """Reruns per architecture: the tuned recipe with each rerun seed, the base recipe also with training_seed."""
    return 2 * len(spec.rerun_seeds) + 1
