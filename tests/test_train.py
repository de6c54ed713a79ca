"""Trainer: run-directory contract, validation-only threshold, two phases, resume after a kill (and the epoch
commit), reproducibility, split records, models loadable without cxrlib, and MirroredStrategy on two logical
CPUs (tiny trees, 32 px, 1-3 epochs)."""
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import write_tree

from cxrlib import data, evaluate, fastops, models
from cxrlib.contract import (LAST_WEIGHTS_FILE, MODEL_FILE, OOD_FILE, PREDICTION_COLUMNS, REPO_ROOT, STATE_FILE,
                             STRESS_FILE)
from cxrlib.params import ParameterError
from cxrlib.runner.profiles import load_profile, profile_path
from cxrlib.train import Phase, TrainConfig, callbacks, phases, rundir, train
from cxrlib.contract import ADDED_RESULT_FIELDS

HISTORY_COLUMNS = {"epoch", "loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc", "learning_rate"}
RUN_KEYS = {"name", "arch", "config", "versions", "data_fingerprint", "split_fingerprint", "seed", "split_seed",
            "precision", "strategy", "cpu_speedups", "device", "timing", "images_per_sec", "peak_memory_mb", "params",
            "model_size_mb", "latency_ms", "best_epoch", "threshold"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(frame, fingerprint, cache_dir) of a 40-px tree: 18 train / 6 val / 8 test images."""
    root = write_tree(tmp_path_factory.mktemp("data") / "chest_xray", per_class={"train": 12, "val": 2, "test": 4})
    index = data.scan_dataset(root)
    frame = data.assign_subsets(index.images, val_fraction=0.25, seed=0)
    return frame, index.fingerprint, tmp_path_factory.mktemp("cache")


def tiny_config(cache_dir, **overrides) -> TrainConfig:
    """A frozen ResNet-50 at 32 px whose head trains on cached features (the cheapest real run), in float32."""
    settings = dict(arch="resnet50", image_size=32, epochs=2, batch_size=8, weights=None, train_base=False,
                    finetune_epochs=0, augment=False, threshold_policy="youden", precision="float32",
                    feature_cache_dir=str(cache_dir), latency_repeats=3, verbose=0)
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def two_phase_run(tiny, tmp_path_factory):
    """A finished head (2 epochs, cached features) + fine-tune (1 epoch) run; records threshold-time facts."""
    frame, fingerprint, cache_dir = tiny
    run_dir = tmp_path_factory.mktemp("runs") / "test" / "resnet50"
    seen, choose_threshold = [], evaluate.choose_threshold

    def spy(y_true, probs, **kwargs):
        seen.append({"n": len(y_true), "predictions_written": (run_dir / "predictions.csv").exists()})
        return choose_threshold(y_true, probs, **kwargs)

    config = tiny_config(cache_dir, finetune_epochs=1, finetune_from="conv5_block3", split_seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "choose_threshold", spy)
        record = train(frame, run_dir, config, data_fingerprint=fingerprint)
    return run_dir, config, record, seen


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_run_directory_follows_the_contract(two_phase_run, tiny):
    run_dir, config, record, _ = two_phase_run
    frame = tiny[0]
    assert RUN_KEYS <= set(record) and json.loads((run_dir / "run.json").read_text()) == record
    history = pd.read_csv(run_dir / "history.csv")
    assert HISTORY_COLUMNS <= set(history.columns) and history["epoch"].tolist() == [0, 1, 2]
    assert history["learning_rate"].tolist() == pytest.approx([1e-3, 1e-3, 1e-5])
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    for subset in ("val", "test"):
        rows = predictions[predictions["subset"] == subset]
        assert rows["path"].tolist() == frame.loc[frame["subset"] == subset, "relpath"].tolist()  # machine-free
    assert predictions["prob"].between(0, 1).all()
    assert record["best_epoch"] == int(history["val_auc"].idxmax())
    assert record["params"]["non_trainable"] + record["params"]["trainable"] == record["params"]["total"] == 25_686_913
    assert record["params"]["trainable"] > 2_099_201  # conv5_block3 unfrozen in the fine-tune phase
    assert record["params"]["optimizer"] == 2 * record["params"]["trainable"] + 2
    assert record["model_size_mb"] > 50 and record["latency_ms"] > 0 and record["images_per_sec"] > 0
    assert {"features", "head", "finetune", "predict", "safeguards", "stress"} <= set(record["timing"])
    assert record["precision"] == "float32" and record["data_fingerprint"] == tiny[1]
    assert record["split_fingerprint"] == data.split_fingerprint(frame) and record["split_seed"] == 0
    assert json.loads((run_dir / STATE_FILE).read_text())["split_fingerprint"] == record["split_fingerprint"]
    assert record["cpu_speedups"] is True  # no GPU here
    assert record["strategy"] == {"name": "auto", "replicas": 1, "workers": 1}
    assert sorted(path.name for path in run_dir.iterdir()) == sorted(  # no partial files
        ["history.csv", "logs", MODEL_FILE, OOD_FILE, "predictions.csv", "run.json", STATE_FILE, STRESS_FILE])


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_threshold_is_chosen_on_validation_before_test_is_predicted(two_phase_run):
    run_dir, config, record, seen = two_phase_run
    predictions = pd.read_csv(run_dir / "predictions.csv")
    val = predictions[predictions["subset"] == "val"]
    assert seen == [{"n": len(val), "predictions_written": False}]
    assert record["threshold"]["value"] == evaluate.choose_threshold(val["target"], val["prob"])
    assert record["threshold"]["policy"] == "youden" and record["threshold"]["youden_delta"] == config.youden_delta


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_saved_best_model_reproduces_the_test_predictions(two_phase_run, tiny):
    run_dir, config, _, _ = two_phase_run
    test_rows = tiny[0][tiny[0]["subset"] == "test"]
    model = models.load_model(run_dir / "model.keras")
    probs = model.predict(data.make_dataset(test_rows, 32, 8), verbose=0).ravel()
    predictions = pd.read_csv(run_dir / "predictions.csv")
    np.testing.assert_allclose(probs, predictions.loc[predictions["subset"] == "test", "prob"], atol=1e-5)


PLAIN_KERAS_SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["cxrlib"] = None  # any import of cxrlib (also from Keras' registry lookups) now fails
    import keras, numpy as np
    model = keras.saving.load_model(sys.argv[1])
    np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
    assert sys.modules["cxrlib"] is None and not [name for name in sys.modules if name.startswith("cxrlib.")]
""")


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_saved_model_loads_with_plain_keras_in_a_process_without_cxrlib(two_phase_run, tmp_path):
    run_dir = two_phase_run[0]
    with zipfile.ZipFile(run_dir / MODEL_FILE) as saved:
        assert "cxrlib" not in saved.read("config.json").decode()  # only Keras' own layers
    images = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-I", "-c", PLAIN_KERAS_SCRIPT, str(run_dir / MODEL_FILE),
                             str(tmp_path / "images.npy"), str(tmp_path / "probs.npy")],
                            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    in_process = fastops.optimize_for_cpu(models.load_model(run_dir / MODEL_FILE))  # the layers training used
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), in_process.predict(images, verbose=0), atol=1e-6)


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_finished_run_is_returned_without_retraining(two_phase_run, tiny, monkeypatch):
    run_dir, config, record, _ = two_phase_run
    monkeypatch.setattr(models, "build_model", lambda *a, **k: pytest.fail("a finished run was retrained"))
    assert train(tiny[0], run_dir, config, data_fingerprint=tiny[1]) == record
    with pytest.raises(ValueError, match=r"epochs: 2 -> 5.*overwrite=True"):
        train(tiny[0], run_dir, tiny_config(tiny[2], epochs=5, finetune_epochs=1, finetune_from="conv5_block3"),
              data_fingerprint=tiny[1])


class SimulatedKill(Exception):
    """Stands in for a killed process."""


class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise SimulatedKill(f"killed after epoch {epoch}")


class Recorder(keras.callbacks.Callback):
    """Notes the epochs a fit runs and the optimizer step count it starts from."""

    def __init__(self):
        super().__init__()
        self.epochs, self.start_iterations = [], None

    def on_train_begin(self, logs=None):
        self.start_iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_killed_run_resumes_from_the_last_completed_epoch(tiny, tmp_path):
    frame, fingerprint, cache_dir = tiny
    config = tiny_config(cache_dir, epochs=3, early_stopping_patience=None)
    with pytest.raises(SimulatedKill):
        train(frame, tmp_path / "run", config, data_fingerprint=fingerprint, callbacks=[KillAfterFirstEpoch()])
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 1
    other_split = data.assign_subsets(frame.drop(columns="subset"), val_fraction=0.25, seed=3)
    assert data.split_fingerprint(other_split) != data.split_fingerprint(frame)
    with pytest.raises(ValueError, match=r"split_fingerprint differs.*overwrite=True"):
        train(other_split, tmp_path / "run", config, data_fingerprint=fingerprint)
    recorder = Recorder()
    record = train(frame, tmp_path / "run", config, data_fingerprint=fingerprint, callbacks=[recorder])
    steps_per_epoch = int(np.ceil((frame["subset"] == "train").sum() / config.batch_size))
    assert recorder.epochs == [1, 2]
    assert recorder.start_iterations == steps_per_epoch  # the optimizer state came back with the weights
    assert pd.read_csv(tmp_path / "run" / "history.csv")["epoch"].tolist() == [0, 1, 2]
    assert record["starts"] == 2 and record["feature_cache_hits"]["train"]


def test_history_rows_past_the_checkpoint_are_dropped_on_resume(tmp_path):
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.9, 0.8, 0.7]}).to_csv(tmp_path / "history.csv", index=False)
    rundir.truncate_history(tmp_path, epochs_done=2)
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [0, 1]


def _committed_epoch(run_dir: Path, epoch: int) -> rundir.RunState:
    """Commit an epoch whose files hold their epoch number (as a run's checkpoint does with real weights)."""
    state = rundir.RunState(config={}, epoch=epoch)
    rundir.commit_epoch(run_dir, state, {LAST_WEIGHTS_FILE: lambda path: path.write_text(f"weights {epoch}"),
                                         MODEL_FILE: lambda path: path.write_text(f"model {epoch}")})
    return state


def test_a_kill_during_the_epoch_commit_leaves_files_that_match_the_state(tmp_path):
    _committed_epoch(tmp_path, 1)
    # killed after writing the partial files, before state.json: the next start discards them
    (tmp_path / rundir.PARTIAL_FILES[LAST_WEIGHTS_FILE]).write_text("weights 2")
    state = rundir.RunState.load(tmp_path / STATE_FILE)
    rundir.settle_files(tmp_path, state)
    assert state.epoch == 1 and (tmp_path / LAST_WEIGHTS_FILE).read_text() == "weights 1"
    assert not (tmp_path / rundir.PARTIAL_FILES[LAST_WEIGHTS_FILE]).exists()
    # killed after state.json, before the renames: the next start completes them
    state = _committed_epoch(tmp_path, 2)
    for name, partial in rundir.PARTIAL_FILES.items():
        os.replace(tmp_path / name, tmp_path / partial)
    rundir.settle_files(tmp_path, rundir.RunState.load(tmp_path / STATE_FILE))
    assert (tmp_path / LAST_WEIGHTS_FILE).read_text() == "weights 2"
    assert (tmp_path / MODEL_FILE).read_text() == "model 2"


def test_a_worker_copies_the_committed_progress_of_the_chief(tmp_path):
    chief, worker = tmp_path / "chief", tmp_path / "worker"
    chief.mkdir(), worker.mkdir()
    _committed_epoch(chief, 3)
    os.replace(chief / LAST_WEIGHTS_FILE, chief / rundir.PARTIAL_FILES[LAST_WEIGHTS_FILE])  # rename still pending
    rundir.copy_progress(chief, worker)
    assert rundir.RunState.load(worker / STATE_FILE).epoch == 3
    assert (worker / LAST_WEIGHTS_FILE).read_text() == "weights 3" and (worker / MODEL_FILE).read_text() == "model 3"
    assert (chief / rundir.PARTIAL_FILES[LAST_WEIGHTS_FILE]).exists()  # the chief's files are only read


def test_a_train_config_left_at_its_defaults_is_the_published_protocol():
    protocol = load_profile(profile_path("full"))
    defaults = TrainConfig(arch="resnet50").result_fields()
    shared = sorted(set(defaults) & set(protocol))
    assert len(shared) >= 18
    assert {name: defaults[name] for name in shared} == {name: protocol[name] for name in shared}
    assert defaults["seed"] == protocol["seeds"][0]


def test_a_run_is_reused_only_with_the_same_split(tmp_path):
    config = tiny_config(tmp_path)
    fingerprints = {"data_fingerprint": "data", "split_fingerprint": "split"}
    rundir.check_same_run(config.result_fields(), fingerprints, config, fingerprints, tmp_path)
    for older in ({"data_fingerprint": "data"}, {"data_fingerprint": "data", "split_fingerprint": None}):
        rundir.check_same_run(config.result_fields(), older, config, fingerprints, tmp_path)  # before split records
    with pytest.raises(ValueError, match=r"data_fingerprint differs \(None -> data\)"):
        rundir.check_same_run(config.result_fields(), {"split_fingerprint": "split"}, config, fingerprints, tmp_path)
    older_fields = {k: v for k, v in config.result_fields().items() if k not in ADDED_RESULT_FIELDS}
    rundir.check_same_run(older_fields, fingerprints, config, fingerprints, tmp_path)  # fields added later
    with pytest.raises(ValueError, match=r"weight_decay: 0.0 -> 0.01"):  # ... had their earlier value, not a default
        rundir.check_same_run(older_fields, fingerprints, tiny_config(tmp_path, weight_decay=0.01), fingerprints,
                              tmp_path)
    with pytest.raises(ValueError, match=r"split_fingerprint differs \(other -> split\).*overwrite=True"):
        rundir.check_same_run(config.result_fields(), {**fingerprints, "split_fingerprint": "other"}, config,
                              fingerprints, tmp_path)
    with pytest.raises(ValueError, match=r"split_seed: None -> 1"):
        rundir.check_same_run(config.result_fields(), fingerprints, tiny_config(tmp_path, split_seed=1),
                              fingerprints, tmp_path)


@pytest.mark.parametrize("cpu_speedups", [True, False])
def test_fastops_layers_are_used_only_for_cpu_training(cpu_speedups, tmp_path):
    model = phases.build(tiny_config(tmp_path), cpu_speedups)
    classes = {type(layer) for layer in fastops.nested_layers(model)}
    assert bool(classes & set(fastops.STANDARD_LAYER_CLASSES)) == cpu_speedups
    assert bool(classes & set(fastops.CPU_LAYER_CLASSES)) != cpu_speedups


def test_keras_keeps_the_callback_counters_a_resumed_phase_restores():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    early = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=2)
    reduce_lr = keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", patience=1)
    for callback in (early, reduce_lr):
        callback.set_model(model)
        callback.on_train_begin()
    assert set(callbacks.counters(early)) == {"wait", "best", "stopped_epoch", "best_epoch"}
    assert set(callbacks.counters(reduce_lr)) == {"wait", "best", "cooldown_counter"}
    early.wait, early.best = 1, 0.9  # as restored: one epoch without improving on 0.9 before the kill
    early.on_epoch_end(5, {"val_auc": 0.8})
    assert model.stop_training


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_same_seed_gives_the_same_predictions(tiny, tmp_path):
    frame, fingerprint, cache_dir = tiny
    probs = []
    for name in ("first", "second"):
        train(frame, tmp_path / name, tiny_config(cache_dir, epochs=1, seed=7), data_fingerprint=fingerprint)
        probs.append(pd.read_csv(tmp_path / name / "predictions.csv")["prob"].to_numpy())
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-6)
    assert np.ptp(probs[0]) > 0  # the model is not constant, so equality means something


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_cosine_schedule_anneals_each_phase_from_its_own_rate(tiny, tmp_path):
    frame, fingerprint, cache_dir = tiny
    config = tiny_config(cache_dir, epochs=3, learning_rate=0.01, lr_schedule="cosine", finetune_epochs=2,
                         finetune_learning_rate=0.001, finetune_from="conv5_block3", early_stopping_patience=None)
    train(frame, tmp_path / "run", config, data_fingerprint=fingerprint)
    rates = pd.read_csv(tmp_path / "run" / "history.csv")["learning_rate"].to_numpy()
    head, finetune = rates[:3], rates[3:]
    assert len(finetune) == 2
    assert np.all(np.diff(head) < 0) and head[0] <= 0.01 and head[-1] < 0.001  # annealed towards 0
    assert 0.0001 < finetune[0] <= 0.001 and finetune[-1] < finetune[0]  # restarts from the phase's rate


def test_label_smoothing_reaches_the_compiled_loss(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    losses = {}
    for smoothing in (0.0, 0.2):
        phases.compile_model(model, tiny_config(tmp_path, label_smoothing=smoothing), Phase("train", 0, 2, 0.01),
                             steps_per_epoch=3)
        losses[smoothing] = float(model.loss(np.array([[1.0]]), np.array([[0.999]])))
    assert model.loss.label_smoothing == 0.2
    assert losses[0.2] > losses[0.0] + 0.05  # a confident correct answer is penalised only when smoothing


@pytest.mark.parametrize("overrides, message", [
    ({"arch": "vgg16"}, "field 'arch' = 'vgg16' is not an allowed value"),
    ({"strategy": "tpu"}, "field 'strategy' = 'tpu'"),
    ({"early_stopping_patience": 0}, "field 'early_stopping_patience' = 0 is out of range"),
    ({"plateau_factor": 1.0}, "field 'plateau_factor'"),
    ({"plateau_patience": -1}, "field 'plateau_patience'"),
    ({"latency_repeats": 0}, "field 'latency_repeats'"),
    ({"lr_schedule": "step"}, "parameter 'lr_schedule' = 'step'"),
    ({"label_smoothing": 1.0}, "parameter 'label_smoothing' = 1.0 is out of range"),
    ({"epochs": "3"}, "parameter 'epochs' = '3' has type str"),
    ({"train_base": True, "finetune_epochs": 2}, "needs train_base false"),
    ({"precision": "fp8"}, "parameter 'precision' = 'fp8'"),
    ({"threshold_policy": "f1"}, "parameter 'threshold_policy' = 'f1'"),
    ({"weights": "backbone.txt"}, "parameter 'weights' = 'backbone.txt'"),
])
def test_bad_config_is_rejected(overrides, message, tmp_path):
    with pytest.raises(ParameterError, match=message) as error:
        tiny_config(tmp_path, **overrides)
    assert "TrainConfig" in str(error.value)


def test_config_keeps_paths_as_strings(tmp_path):
    config = tiny_config(tmp_path, weights={"resnet50": tmp_path / "r.weights.h5", "densenet121": None})
    assert config.weights == {"resnet50": str(tmp_path / "r.weights.h5"), "densenet121": None}
    assert config.feature_cache_dir == str(tmp_path)


def test_frame_without_subsets_is_rejected(tiny, tmp_path):
    frame = tiny[0].drop(columns="subset")
    with pytest.raises(ValueError, match="assign_subsets"):
        train(frame, tmp_path / "run", tiny_config(tmp_path))


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from helpers import write_tree
    from cxrlib import data
    from cxrlib.train import TrainConfig, train
    root = write_tree(Path(sys.argv[2]) / "chest_xray", per_class={"train": 12, "val": 2, "test": 4})
    frame = data.assign_subsets(data.scan_dataset(root).images, val_fraction=0.25, seed=0)
    config = TrainConfig(arch="resnet50", image_size=32, epochs=1, batch_size=8, weights=None, train_base=False,
                         finetune_epochs=0, augment=False, use_feature_cache=False, strategy="mirrored",
                         latency_repeats=1, verbose=0)
    record = train(frame, sys.argv[2] + "/run", config)
    print(json.dumps(record["strategy"]))
""")


@pytest.mark.slow  # trains a model: the full suite (./run_tests.sh) runs it, the fast lane does not
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(Path(__file__).parent), str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"name": "mirrored", "replicas": 2, "workers": 1}
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert set(predictions["subset"]) == {"val", "test"} and predictions["prob"].notna().all()
