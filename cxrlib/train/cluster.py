"""Distribution strategy of a run, and which worker writes the run directory.

`MultiWorkerMirroredStrategy` configures TensorFlow's collective ops, which is possible only before
TensorFlow starts its runtime (listing logical devices, building a model, running an op), so train()
creates the strategy before anything else. Every worker runs the same steps (their collective ops must
pair up); only the chief writes the run directory, the others write to a temporary directory that is
removed when train() returns. To continue an interrupted run, the non-chief workers copy the chief's
progress first, so the run directory must be on a file system every worker sees under the same path;
`check_workers_agree` stops all workers when they would start from different epochs.
"""
import contextlib
import functools
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from ..contract import STRATEGIES

LAUNCH_HELP = (
    "start one fresh Python process per worker, each with TF_CONFIG set to the same cluster and its own task, "
    'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
    '"index": 0}}\' (index 1 on the second worker), and call cxrlib.train.train (or '
    "make_strategy('multiworker')) before anything else uses TensorFlow (building a model, listing devices)")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The tf.distribute strategy called `name` (one of contract.STRATEGIES).

    `auto`: MirroredStrategy with several GPUs, else the default; `mirrored` on CPUs uses every logical CPU;
    `multiworker`: one replica per worker process of TF_CONFIG's cluster; `none`: the default strategy.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "multiworker":  # before anything below initialises TensorFlow
        return _multi_worker_strategy()
    if name == "none":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


class _MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose reduce() takes what Keras 3's fit gives it (keras-team/keras#20585).

    fit reduces the first (images, labels) batch in one call to build the model, and reduces the scalar
    logs of each step along axis 0; the stock strategy rejects both across workers ("Attempt to convert
    a value (PerReplica...)", "Invalid reduction dimension 0 for input with 0 dimensions").
    """

    def reduce(self, reduce_op, value, axis):
        """strategy.reduce of each value of a nest; scalars are reduced across replicas only."""
        def reduce_one(part):
            rank = self.experimental_local_results(part)[0].shape.rank
            return super(_MultiWorkerStrategy, self).reduce(reduce_op, part, None if rank == 0 else axis)

        return tf.nest.map_structure(reduce_one, value)


@functools.cache
def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The process's one MultiWorkerMirroredStrategy for TF_CONFIG's cluster, or an error saying how to launch workers.

    Made once per process: a script may create it first thing (make_strategy) and train() reuses it.
    """
    try:
        return _MultiWorkerStrategy()
    except RuntimeError as error:  # "Collective ops must be configured at program startup"
        raise RuntimeError(f"strategy='multiworker' needs TensorFlow untouched when the run starts, but this process "
                           f"used it already (TF_CONFIG={os.environ.get('TF_CONFIG')!r}); {LAUNCH_HELP}") from error


def _task(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None, dict]:
    """(task type, task index, cluster as a dict) of this process; (None, None, {}) outside a cluster."""
    resolver = strategy.cluster_resolver  # None for single-process strategies
    if resolver is None:
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory: the `chief` task, else worker 0, else the only process."""
    task_type, task_id, cluster = _task(strategy)
    if not cluster or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def describe(strategy: tf.distribute.Strategy, name: str) -> dict:
    """run.json's `strategy`: its name, replicas in sync, and the number of worker processes."""
    _, _, cluster = _task(strategy)
    workers = sum(len(cluster.get(job, ())) for job in ("chief", "worker")) or 1
    return {"name": name, "replicas": strategy.num_replicas_in_sync, "workers": workers}


@contextlib.contextmanager
def worker_directory(run_dir: Path, strategy: tf.distribute.Strategy):
    """The directory this process writes: `run_dir` on the chief, elsewhere a temporary one removed afterwards."""
    if is_chief(strategy):
        yield run_dir
        return
    task_type, task_id, _ = _task(strategy)
    scratch = Path(tempfile.mkdtemp(prefix=f"cxrlib-{task_type}-{task_id}-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_workers_agree(strategy: tf.distribute.Strategy, start_epoch: int) -> None:
    """Fail on every worker unless all continue from the same epoch (-1: the run is finished)."""
    if strategy.cluster_resolver is None:
        return
    gather = tf.function(lambda: strategy.gather(strategy.run(lambda: tf.constant([start_epoch], tf.int64)), axis=0))
    epochs = gather().numpy().tolist()
    if len(set(epochs)) > 1:
        raise RuntimeError(f"the workers would continue this run from different epochs {epochs} (-1: finished): "
                           f"non-chief workers copy the chief's progress from the run directory, so it must be on a "
                           f"file system every worker sees under the same path")
