"""Frozen-base fast path: pooled backbone features computed once per subset, cached on disk as .npz.

With a frozen backbone and no augmentation every epoch feeds the same images through the same fixed
function, so the trainer computes `pool` outputs once and trains the head layers alone on them. The head
model shares its layers with the full model (models.head_of), so the full model is assembled for free.
`SubsetFeatures` serves the features of a run's subsets; cache files are written under a private name and
renamed into place, so processes sharing a cache (multi-worker training) never read half a file.
"""
import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm.auto import tqdm

from .contract import REPO_ROOT
from .data.pipeline import DECODER_VERSION, make_dataset
from .files import write_atomic
from .models import backbone_weights, file_md5

DEFAULT_CACHE_DIR = REPO_ROOT / "cache" / "features"
CACHE_FORMAT = "pooled-v1"  # bump when what a cached file means changes


def feature_model(model: keras.Model) -> keras.Model:
    """Raw pixels -> pooled backbone features, sharing the layers (and weights) of a build_model model."""
    return keras.Model(model.input, model.get_layer("pool").output, name=f"{model.name}_features")


def weights_id(weights, seed: int) -> str:
    """What the frozen backbone's weights are: `imagenet`, the md5 of a weights file, or a seeded random init."""
    if weights is None:
        return f"random-seed{seed}"
    if weights == "imagenet":
        return "imagenet"
    return f"file-md5-{file_md5(Path(weights))}"


def feature_key(frame: pd.DataFrame, arch: str, image_size: int, precision: str, weights, seed: int) -> str:
    """Identifies cached features exactly: image content (relpath, sha256, target) and the backbone setup."""
    setup = {"format": CACHE_FORMAT, "arch": arch, "image_size": image_size, "precision": precision,
             "weights": weights_id(backbone_weights(arch, weights), seed), "decoder": DECODER_VERSION}
    digest = hashlib.sha256(json.dumps(setup, sort_keys=True).encode())
    names = _row_names(frame)
    hashes = frame["sha256"] if "sha256" in frame.columns else [_file_stamp(p) for p in frame["path"]]
    for name, content, target in zip(names, hashes, frame["target"]):
        digest.update(f"{name}\t{content}\t{target}\n".encode())
    return digest.hexdigest()[:32]


def _row_names(frame: pd.DataFrame) -> np.ndarray:
    """Row identities that survive moving the data folder: relpath when known, else the path."""
    return np.asarray(frame["relpath" if "relpath" in frame.columns else "path"].astype(str).tolist(), dtype=str)


def _file_stamp(path: str) -> str:
    """Size and mtime of a file, standing in for its hash when the frame has no sha256 column."""
    stat = os.stat(path)
    return f"{stat.st_size}-{stat.st_mtime_ns}"


class _ProgressBar(keras.callbacks.Callback):
    """Advances a tqdm bar by the images of each predicted batch."""

    def __init__(self, progress: tqdm):
        super().__init__()
        self.progress = progress

    def on_predict_batch_end(self, batch, logs=None):
        self.progress.update(len(logs["outputs"]))


def extract_features(extractor: keras.Model, frame: pd.DataFrame, image_size: int, batch_size: int = 32,
                     desc: str = "features") -> np.ndarray:
    """float32 [N, D] features (`extractor` = feature_model(model)) of the frame's images, in row order."""
    dataset = make_dataset(frame, image_size, batch_size, cache=None)
    with tqdm(total=len(frame), desc=desc, unit="img") as progress:
        pooled = extractor.predict(dataset, verbose=0, callbacks=[_ProgressBar(progress)])
    return np.asarray(pooled, dtype=np.float32)


def cached_features(extractor: keras.Model, frame: pd.DataFrame, *, arch: str, image_size: int, precision: str,
                    weights, seed: int, cache_dir: str | Path | None = None, batch_size: int = 32,
                    desc: str = "features") -> tuple[np.ndarray, bool]:
    """(features, came_from_cache): load `<cache_dir>/<arch>-<size>px-<key>.npz` or extract and write it."""
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    path = cache_dir / f"{arch}-{image_size}px-{feature_key(frame, arch, image_size, precision, weights, seed)}.npz"
    names = _row_names(frame)
    if path.exists():
        with np.load(path) as cached:
            if np.array_equal(cached["names"], names):
                return cached["features"], True
    features = extract_features(extractor, frame, image_size, batch_size, desc)
    write_atomic(path, lambda partial: np.savez(partial, features=features, names=names))
    return features, False


class SubsetFeatures:
    """Pooled features of named frames (a run's subsets) for one backbone setup, from the disk cache or extracted.

    The extractor is rebuilt only when the model's layers change: one predict trace per run, not per subset.
    """

    def __init__(self, frames: dict[str, pd.DataFrame], *, arch: str, image_size: int, precision: str, weights,
                 seed: int, cache_dir: str | Path | None = None, batch_size: int = 32):
        self.frames = frames
        self.setup = dict(arch=arch, image_size=image_size, precision=precision, weights=weights, seed=seed,
                          cache_dir=cache_dir, batch_size=batch_size)
        self._extractor = None

    def extractor(self, model: keras.Model) -> keras.Model:
        """feature_model(model), reused while `model` has the same `pool` layer."""
        if self._extractor is None or self._extractor.get_layer("pool") is not model.get_layer("pool"):
            self._extractor = feature_model(model)
        return self._extractor

    def get(self, model: keras.Model, name: str) -> tuple[np.ndarray, bool]:
        """(features, came_from_cache) of frame `name` through `model`'s frozen backbone."""
        return cached_features(self.extractor(model), self.frames[name], **self.setup,
                               desc=f"{self.setup['arch']} {name} features")


def feature_dataset(features: np.ndarray, targets: np.ndarray, batch_size: int, training: bool = False,
                    seed: int = 42) -> tf.data.Dataset:
    """(features, labels) batches; `training` reshuffles every epoch (seeded), like data.make_dataset."""
    dataset = tf.data.Dataset.from_tensor_slices((features.astype(np.float32), targets.astype(np.float32)))
    if training:
        dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
