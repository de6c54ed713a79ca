"""Frozen-base fast path: the feature cache and its equivalence with training on images."""
import keras
import numpy as np
import pandas as pd
import pytest

from cxrlib import data, features, models
from cxrlib.contract import ARCHS
from cxrlib.train import TrainConfig, train


@pytest.fixture(scope="module")
def tiny(shared_tree):
    """(frame, fingerprint) of the shared 40-px tree: 18 train / 6 val / 8 test images."""
    index = data.scan_dataset(shared_tree)
    return data.assign_subsets(index.images, val_fraction=0.25, seed=0), index.fingerprint


def key(frame, **overrides):
    """feature_key with defaults, so each test names only what it changes."""
    settings = dict(arch="resnet50", image_size=32, precision="float32", weights=None, seed=42)
    return features.feature_key(frame, **{**settings, **overrides})


def test_cache_key_follows_content_and_backbone_setup(tiny, tmp_path):
    frame = tiny[0][tiny[0]["subset"] == "val"]
    weights_file = tmp_path / "backbone.weights.h5"
    weights_file.write_bytes(b"weights")
    variants = [key(frame, arch="densenet121"), key(frame, image_size=64), key(frame, precision="mixed_bfloat16"),
                key(frame, weights="imagenet"), key(frame, seed=1), key(frame, weights=weights_file),
                key(frame.assign(sha256="0" * 64)), key(frame.iloc[::-1])]
    assert len({key(frame), *variants}) == len(variants) + 1
    assert key(frame, weights="imagenet", seed=1) == key(frame, weights="imagenet")  # seed matters only from scratch
    moved = frame.assign(path=["/elsewhere/" + p for p in frame["relpath"]])
    assert key(moved) == key(frame)  # content-addressed: moving the data folder keeps the cache


def test_cached_features_are_written_once_then_read(tiny, tmp_path, monkeypatch):
    frame = tiny[0][tiny[0]["subset"] == "val"]
    model = models.build_model("resnet50", 32, weights=None, train_base=False)
    extractor = features.feature_model(model)
    setup = dict(arch="resnet50", image_size=32, precision="float32", weights=None, seed=42, cache_dir=tmp_path)
    first, hit = features.cached_features(extractor, frame, **setup)
    assert not hit and first.shape == (len(frame), 2048) and first.dtype == np.float32
    assert len(list(tmp_path.glob("resnet50-32px-*.npz"))) == 1
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: pytest.fail("cache was not used"))
    second, hit = features.cached_features(extractor, frame, **setup)
    assert hit
    np.testing.assert_array_equal(first, second)
    images = np.stack([data.load_image(p, 32) for p in frame["path"]]).astype(np.float32)
    np.testing.assert_allclose(first, extractor(images, training=False), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_fast_path_trains_the_same_model_as_the_image_path(tiny, tmp_path):
    """Full-batch epochs and no dropout make the two paths compute the same updates, so they must agree."""
    frame, fingerprint = tiny
    settings = dict(arch="resnet50", image_size=32, epochs=2, batch_size=32, learning_rate=1e-5, weights=None,
                    train_base=False, finetune_epochs=0, augment=False, dropout=0.0,
                    feature_cache_dir=str(tmp_path / "cache"), latency_repeats=1, verbose=0)
    fast = train(frame, tmp_path / "fast", TrainConfig(**settings), data_fingerprint=fingerprint)
    slow = train(frame, tmp_path / "slow", TrainConfig(**settings, use_feature_cache=False),
                 data_fingerprint=fingerprint)
    assert (fast["predicted_from"], slow["predicted_from"]) == ("cached_features", "images")
    fast_history, slow_history = (pd.read_csv(tmp_path / name / "history.csv") for name in ("fast", "slow"))
    np.testing.assert_allclose(fast_history["loss"], slow_history["loss"], rtol=1e-3)
    fast_probs, slow_probs = (pd.read_csv(tmp_path / name / "predictions.csv")["prob"] for name in ("fast", "slow"))
    assert np.ptp(fast_probs) > 0.05  # predictions spread out, so agreeing on them means something
    np.testing.assert_allclose(fast_probs, slow_probs, atol=1e-4)
    assert fast["params"] == slow["params"]
    # the assembled full model (model.keras) gives what the head gave on cached features
    test_rows = frame[frame["subset"] == "test"]
    assembled = models.load_model(tmp_path / "fast" / "model.keras")
    assembled_probs = assembled.predict(data.make_dataset(test_rows, 32, 32), verbose=0).ravel()
    np.testing.assert_allclose(assembled_probs, fast_probs[-len(test_rows):], atol=1e-5)


def test_cache_key_of_a_weights_mapping_or_template_is_that_of_the_backbones_file(tiny, tmp_path):
    frame = tiny[0][tiny[0]["subset"] == "val"]
    for arch in ARCHS:
        (tmp_path / f"{arch}.weights.h5").write_bytes(arch.encode())
    single = key(frame, weights=tmp_path / "resnet50.weights.h5")
    assert key(frame, weights=str(tmp_path / "{arch}.weights.h5")) == single
    assert key(frame, weights={arch: str(tmp_path / f"{arch}.weights.h5") for arch in ARCHS}) == single


def test_subset_features_reuse_one_extractor_per_model_and_the_cache(tiny, tmp_path):
    frame = tiny[0]
    subsets = {name: frame[frame["subset"] == name].reset_index(drop=True) for name in ("val", "test")}
    pooled = features.SubsetFeatures(subsets, arch="resnet50", image_size=32, precision="float32", weights=None,
                                     seed=42, cache_dir=tmp_path, batch_size=8)
    model = models.build_model("resnet50", 32, weights=None, train_base=False)
    (val, val_hit), (test, test_hit) = pooled.get(model, "val"), pooled.get(model, "test")
    assert val.shape == (len(subsets["val"]), 2048) and test.shape == (len(subsets["test"]), 2048)
    assert not val_hit and not test_hit and pooled.get(model, "val")[1]
    extractor = pooled.extractor(model)
    assert pooled.extractor(keras.Model(model.input, model.output)) is extractor  # same layers: same extractor
    assert pooled.extractor(models.build_model("resnet50", 32, weights=None, train_base=False)) is not extractor
    assert not list(tmp_path.glob("*partial*"))  # written under private names, then renamed
