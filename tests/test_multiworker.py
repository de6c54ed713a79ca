"""Multi-worker training: two worker processes on 127.0.0.1 train one run; only the chief writes the run directory
(tiny tree, 32 px, 1 epoch)."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from types import SimpleNamespace

import pandas as pd
import pytest
import tensorflow as tf

from cxrlib.contract import REPO_ROOT

from cxrlib import data
from cxrlib.contract import LAST_WEIGHTS_FILE, MODEL_FILE, OOD_FILE, PREDICTION_COLUMNS, RECORD_FILES, STATE_FILE
from cxrlib.train import TrainConfig, cluster, train

SETTINGS = dict(arch="resnet50", image_size=32, epochs=1, batch_size=8, weights=None, train_base=False,
                finetune_epochs=0, augment=False,
                use_feature_cache=False, precision="float32", latency_repeats=1, verbose=0)
WORKER_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from cxrlib import data
    from cxrlib.train import TrainConfig, train
    tree, run_dir, settings = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    frame = data.assign_subsets(data.scan_dataset(tree).images, val_fraction=0.25, seed=0)
    record = train(frame, run_dir, TrainConfig(**settings))
    print(json.dumps(record["strategy"]))
""")
WORKER_TIMEOUT_S = 900


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def worker_env(tf_config: dict, scratch) -> dict:
    """The environment of one worker process: its TF_CONFIG and its own temporary folder."""
    return {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(scratch), "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(scope="module")
def cluster_run(shared_tree, tmp_path_factory):
    """(run_dir, [(return code, stdout, stderr, TMPDIR) per worker]) of a two-worker run."""
    root = tmp_path_factory.mktemp("cluster")
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    settings = json.dumps({**SETTINGS, "strategy": "multiworker"})
    launched = []
    for index in range(2):
        scratch, log = root / f"tmp-worker{index}", root / f"worker{index}"
        scratch.mkdir()
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:  # files: a full pipe would stall a worker
            process = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(shared_tree), str(root / "run"),
                                        settings], stdout=out, stderr=err, env=worker_env(tf_config, scratch))
        launched.append((process, log, scratch))
    results = []
    try:
        for process, log, scratch in launched:
            code = process.wait(timeout=WORKER_TIMEOUT_S)
            results.append((code, open(f"{log}.out").read(), open(f"{log}.err").read(), scratch))
    finally:
        for process, _, _ in launched:
            if process.poll() is None:
                process.kill()
    return root / "run", results


@pytest.mark.slow
def test_both_workers_finish_and_train_together(cluster_run):
    _, results = cluster_run
    for code, out, err, _ in results:
        assert code == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1]) == {"name": "multiworker", "replicas": 2, "workers": 2}


@pytest.mark.slow
def test_only_the_chief_writes_the_run_directory_once(cluster_run):
    run_dir, results = cluster_run
    assert {path.name for path in run_dir.iterdir()} == {*RECORD_FILES, MODEL_FILE, OOD_FILE, STATE_FILE, "logs"}
    assert not (run_dir / LAST_WEIGHTS_FILE).exists()
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0]  # one writer: no duplicated rows
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert state["starts"] == 1 and state["phases_done"] == ["head"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["strategy"] == {"name": "multiworker", "replicas": 2, "workers": 2}
    for _, _, _, scratch in results:  # the non-chief's temporary run directory is gone, the chief never made one
        assert not list(scratch.glob("cxrlib-*"))


@pytest.mark.slow
def test_predictions_look_like_a_single_process_run(cluster_run, shared_tree, tmp_path):
    run_dir, _ = cluster_run
    frame = data.assign_subsets(data.scan_dataset(shared_tree).images, val_fraction=0.25, seed=0)
    train(frame, tmp_path / "single", TrainConfig(**SETTINGS, strategy="none"))
    single, multi = (pd.read_csv(path / "predictions.csv") for path in (tmp_path / "single", run_dir))
    assert list(multi.columns) == list(single.columns) == list(PREDICTION_COLUMNS)
    assert multi.shape == single.shape
    assert multi.drop(columns="prob").equals(single.drop(columns="prob"))
    assert multi["prob"].between(0, 1).all()


INITIALISED_FIRST = textwrap.dedent("""
    import tensorflow as tf
    tf.config.list_logical_devices("CPU")  # starts TensorFlow's runtime
    from cxrlib.train import make_strategy
    make_strategy("multiworker")
""")


@pytest.mark.slow
def test_multiworker_after_tensorflow_started_says_how_to_launch_workers(tmp_path):
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]},
                 "task": {"type": "worker", "index": 0}}
    result = subprocess.run([sys.executable, "-c", INITIALISED_FIRST], capture_output=True, text=True,
                            env=worker_env(tf_config, tmp_path), timeout=300)
    assert result.returncode != 0
    assert "strategy='multiworker' needs TensorFlow untouched" in result.stderr
    assert "one fresh Python process per worker" in result.stderr and "TF_CONFIG" in result.stderr


@pytest.mark.parametrize("jobs, task, chief", [
    ({"worker": ["a:1", "b:1"]}, ("worker", 0), True),
    ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, ("chief", 0), True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, ("worker", 0), False),
])
def test_the_chief_task_else_worker_0_writes_the_run_directory(jobs, task, chief, tmp_path, monkeypatch):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(tf.train.ClusterSpec(jobs), task_type=task[0],
                                                                    task_id=task[1])
    strategy = SimpleNamespace(cluster_resolver=resolver, num_replicas_in_sync=2)
    assert cluster.is_chief(strategy) == chief
    assert cluster.describe(strategy, "multiworker") == {"name": "multiworker", "replicas": 2, "workers": 2}
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    with cluster.worker_directory(tmp_path / "run", strategy) as directory:
        assert (directory == tmp_path / "run") == chief
        assert chief or directory.is_dir() and directory.parent == tmp_path / "scratch"
        if not chief:
            (directory / "state.json").write_text("{}")
    assert not list((tmp_path / "scratch").iterdir())  # the non-chief's directory is removed, files and all


def test_a_single_process_is_its_own_chief(tmp_path):
    strategy = cluster.make_strategy("none")
    assert cluster.is_chief(strategy)
    assert cluster.describe(strategy, "none") == {"name": "none", "replicas": 1, "workers": 1}
    with cluster.worker_directory(tmp_path, strategy) as directory:
        assert directory == tmp_path
