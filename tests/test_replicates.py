"""Replicates of a training notebook: one run per seed, finished ones reused, records copied; the split seed and
the training seed control different things (tiny generated tree, 32 px, one epoch)."""
import json

import numpy as np
import pytest

from cxrlib import data, params
from cxrlib.contract import RECORD_FILES, replicate_dir
from cxrlib.report import training
from cxrlib.stress.shifts import load_declaration
from cxrlib.stress.summary import read_stress_record
from cxrlib.train import TrainConfig, phases


def namespace(tmp_path, data_dir, **overrides) -> dict:
    """A training notebook's parameters for a tiny, fast run (what papermill would inject)."""
    values = {"profile": "test", "data_dir": str(data_dir), "runs_dir": str(tmp_path / "runs"),
              "report_dir": str(tmp_path / "report"), "image_size": 32, "batch_size": 8, "epochs": 1,
              "learning_rate": 0.001, "lr_schedule": "cosine", "label_smoothing": 0.1, "weight_decay": 0.0, "finetune_epochs": 0,
              "finetune_learning_rate": 1e-5, "weights": None, "train_base": True, "head_units": 8, "dropout": 0.5,
              "augment": False, "augment_strength": 1.0, "precision": "float32", "recipes": None, "threshold_policy": "fixed", "youden_delta": 0.02,
              "target_sensitivity": 0.95, "seeds": [1, 2], "split_seed": None, "subsample_per_class": None,
              "val_fraction": 0.25, "n_boot": 10, "n_examples": 1, "verbose": 0}
    return {**values, **overrides}


@pytest.fixture(scope="module")
def trained(shared_tree, tmp_path_factory):
    """Seeds 1 and 2 trained once into a fresh folder: (folder, runs)."""
    root = tmp_path_factory.mktemp("replicates")
    return root, training.train_replicates(training.setup(namespace(root, shared_tree), "resnet50"))


@pytest.mark.slow
def test_each_seed_trains_once_and_its_records_are_copied_next_to_the_report(shared_tree, trained):
    root, runs = trained
    assert [run.seed for run in runs] == [1, 2]
    for seed in (1, 2):
        record = json.loads((replicate_dir(root / "runs", "resnet50", seed) / "run.json").read_text())
        assert record["seed"] == seed and record["config"]["split_seed"] == seed
        copied = replicate_dir(root / "report" / "runs", "resnet50", seed)
        assert sorted(path.name for path in copied.iterdir()) == sorted(RECORD_FILES)
        stress = read_stress_record(copied)  # every test image under every declared shift, recorded by training
        assert len(stress) == len(load_declaration().conditions) * 8 and "stress" in record["timing"]
    first = {path: path.stat().st_mtime_ns for path in (root / "runs").rglob("run.json")}
    again = training.train_replicates(training.setup(namespace(root, shared_tree), "resnet50"))
    assert {path: path.stat().st_mtime_ns for path in (root / "runs").rglob("run.json")} == first
    assert [run.info["starts"] for run in again] == [run.info["starts"] for run in runs]  # reused, not retrained


@pytest.mark.slow
def test_a_replicate_with_other_settings_is_refused_not_overwritten(shared_tree, trained):
    root, _ = trained
    record = replicate_dir(root / "runs", "resnet50", 1) / "run.json"
    before = record.read_bytes()
    changed = training.setup(namespace(root, shared_tree, seeds=[1], split_seed=5), "resnet50")
    with pytest.raises(ValueError, match="other settings"):
        training.train_replicates(changed)
    assert record.read_bytes() == before


def test_the_training_seed_alone_sets_the_initial_weights(shared_tree):
    weights = []
    for split_seed in (1, 2):
        config = TrainConfig(arch="resnet50", image_size=32, epochs=1, weights=None, train_base=True, finetune_epochs=0,
                             head_units=8, precision="float32", seed=7, split_seed=split_seed)
        weights.append(phases.build(config, cpu_speedups=False).get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    other = TrainConfig(arch="resnet50", image_size=32, epochs=1, weights=None, train_base=True, finetune_epochs=0,
                        head_units=8, precision="float32", seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(weights[0], phases.build(other, False).get_weights()))


def test_the_split_seed_alone_sets_the_split(shared_tree):
    index = data.scan_dataset(shared_tree)
    settings = {"val_fraction": 0.25, "subsample_per_class": None}
    splits = {seed: data.split_fingerprint(data.replicate_frame(index.images, settings, split))
              for seed, split in params.replicate_seeds({"seeds": [1, 2], "split_seed": 3})}
    assert splits[1] == splits[2]  # two training seeds, one split seed: the same split
    own = {seed: data.split_fingerprint(data.replicate_frame(index.images, settings, split))
           for seed, split in params.replicate_seeds({"seeds": [1, 2], "split_seed": None})}
    assert own[1] != own[2]
