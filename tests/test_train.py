"""Trainer: run-directory contract, validation-only threshold, two phases, resume after a kill,
reproducibility, and MirroredStrategy on two logical CPUs (tiny trees, 32 px, 1-3 epochs)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, write_tree

from cxrlib import data, evaluate, models, train as trainer
from cxrlib.train import TrainConfig, train

HISTORY_COLUMNS = {"epoch", "loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc", "learning_rate"}
RUN_KEYS = {"name", "arch", "config", "versions", "data_fingerprint", "seed", "precision", "device", "timing",
            "images_per_sec", "peak_memory_mb", "params", "model_size_mb", "latency_ms", "best_epoch", "threshold"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(frame, fingerprint, cache_dir) of a 40-px tree: 18 train / 6 val / 8 test images."""
    root = write_tree(tmp_path_factory.mktemp("data") / "chest_xray", per_class={"train": 12, "val": 2, "test": 4})
    index = data.scan_dataset(root)
    frame = data.assign_subsets(index.images, val_fraction=0.25, seed=0)
    return frame, index.fingerprint, tmp_path_factory.mktemp("cache")


def tiny_config(cache_dir, **overrides) -> TrainConfig:
    """A frozen ResNet-50 at 32 px whose head trains on cached features (the cheapest real run)."""
    settings = dict(arch="resnet50", image_size=32, epochs=2, batch_size=8, train_base=False, augment=False,
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

    config = tiny_config(cache_dir, finetune_epochs=1, finetune_from="conv5_block3")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.evaluate, "choose_threshold", spy)
        record = train(frame, run_dir, config, data_fingerprint=fingerprint)
    return run_dir, config, record, seen


def test_run_directory_follows_the_contract(two_phase_run, tiny):
    run_dir, config, record, _ = two_phase_run
    frame = tiny[0]
    assert RUN_KEYS <= set(record) and json.loads((run_dir / "run.json").read_text()) == record
    history = pd.read_csv(run_dir / "history.csv")
    assert HISTORY_COLUMNS <= set(history.columns) and history["epoch"].tolist() == [0, 1, 2]
    assert history["learning_rate"].tolist() == pytest.approx([1e-3, 1e-3, 1e-5])
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert list(predictions.columns) == ["path", "subset", "label", "target", "patient_id", "prob"]
    for subset in ("val", "test"):
        rows = predictions[predictions["subset"] == subset]
        assert rows["path"].tolist() == frame.loc[frame["subset"] == subset, "path"].tolist()
    assert predictions["prob"].between(0, 1).all()
    assert record["best_epoch"] == int(history["val_auc"].idxmax())
    assert record["params"]["non_trainable"] + record["params"]["trainable"] == record["params"]["total"] == 25_686_913
    assert record["params"]["trainable"] > 2_099_201  # conv5_block3 unfrozen in the fine-tune phase
    assert record["params"]["optimizer"] == 2 * record["params"]["trainable"] + 2
    assert record["model_size_mb"] > 50 and record["latency_ms"] > 0 and record["images_per_sec"] > 0
    assert {"features", "head", "finetune", "predict"} <= set(record["timing"])
    assert record["precision"] == "float32" and record["data_fingerprint"] == tiny[1]
    assert not (run_dir / "last.weights.h5").exists() and (run_dir / "logs").is_dir()


def test_threshold_is_chosen_on_validation_before_test_is_predicted(two_phase_run):
    run_dir, config, record, seen = two_phase_run
    predictions = pd.read_csv(run_dir / "predictions.csv")
    val = predictions[predictions["subset"] == "val"]
    assert seen == [{"n": len(val), "predictions_written": False}]
    assert record["threshold"]["value"] == evaluate.choose_threshold(val["target"], val["prob"])
    assert record["threshold"]["policy"] == "youden"


def test_saved_best_model_reproduces_the_test_predictions(two_phase_run, tiny):
    run_dir, config, _, _ = two_phase_run
    test_rows = tiny[0][tiny[0]["subset"] == "test"]
    model = models.load_model(run_dir / "model.keras")
    probs = model.predict(data.make_dataset(test_rows, 32, 8), verbose=0).ravel()
    predictions = pd.read_csv(run_dir / "predictions.csv")
    np.testing.assert_allclose(probs, predictions.loc[predictions["subset"] == "test", "prob"], atol=1e-5)


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


def test_killed_run_resumes_from_the_last_completed_epoch(tiny, tmp_path):
    frame, fingerprint, cache_dir = tiny
    config = tiny_config(cache_dir, epochs=3, early_stopping_patience=None)
    with pytest.raises(SimulatedKill):
        train(frame, tmp_path / "run", config, data_fingerprint=fingerprint, callbacks=[KillAfterFirstEpoch()])
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 1
    recorder = Recorder()
    record = train(frame, tmp_path / "run", config, data_fingerprint=fingerprint, callbacks=[recorder])
    steps_per_epoch = int(np.ceil((frame["subset"] == "train").sum() / config.batch_size))
    assert recorder.epochs == [1, 2]
    assert recorder.start_iterations == steps_per_epoch  # the optimizer state came back with the weights
    assert pd.read_csv(tmp_path / "run" / "history.csv")["epoch"].tolist() == [0, 1, 2]
    assert record["starts"] == 2 and record["feature_cache_hits"]["train"]


def test_history_rows_past_the_checkpoint_are_dropped_on_resume(tmp_path):
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.9, 0.8, 0.7]}).to_csv(tmp_path / "history.csv", index=False)
    trainer._truncate_history(tmp_path, epochs_done=2)
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [0, 1]


def test_same_seed_gives_the_same_predictions(tiny, tmp_path):
    frame, fingerprint, cache_dir = tiny
    probs = []
    for name in ("first", "second"):
        train(frame, tmp_path / name, tiny_config(cache_dir, epochs=1, seed=7), data_fingerprint=fingerprint)
        probs.append(pd.read_csv(tmp_path / name / "predictions.csv")["prob"].to_numpy())
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-6)
    assert np.ptp(probs[0]) > 0  # the model is not constant, so equality means something


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
        trainer._compile(model, tiny_config(tmp_path, label_smoothing=smoothing), trainer.Phase("train", 0, 2, 0.01),
                         steps_per_epoch=3)
        losses[smoothing] = float(model.loss(np.array([[1.0]]), np.array([[0.999]])))
    assert model.loss.label_smoothing == 0.2
    assert losses[0.2] > losses[0.0] + 0.05  # a confident correct answer is penalised only when smoothing


@pytest.mark.parametrize("overrides, message", [
    ({"arch": "vgg16"}, "arch must be one of"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"strategy": "tpu"}, "strategy"),
    ({"train_base": True, "finetune_epochs": 2}, "train_base=False"),
    ({"precision": "fp8"}, "precision"),
    ({"threshold_policy": "f1"}, "threshold_policy"),
])
def test_bad_config_is_rejected(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, **overrides)


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
    from conftest import write_tree
    from cxrlib import data
    from cxrlib.train import TrainConfig, train
    root = write_tree(Path(sys.argv[2]) / "chest_xray", per_class={"train": 12, "val": 2, "test": 4})
    frame = data.assign_subsets(data.scan_dataset(root).images, val_fraction=0.25, seed=0)
    config = TrainConfig(arch="resnet50", image_size=32, epochs=1, batch_size=8, train_base=False, augment=False,
                         use_feature_cache=False, strategy="mirrored", latency_repeats=1, verbose=0)
    record = train(frame, sys.argv[2] + "/run", config)
    print(json.dumps(record["strategy"]))
""")


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(Path(__file__).parent), str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"name": "mirrored", "replicas": 2}
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert set(predictions["subset"]) == {"val", "test"} and predictions["prob"].notna().all()
