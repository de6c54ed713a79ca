"""tf.data input pipeline: decode once with PIL, cache uint8, shuffle, batch, augment (cxrlib.data.augment)."""
import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image, ImageOps

from cxrlib.data.augment import build_augmenter

AUTOTUNE = tf.data.AUTOTUNE
# Bump when load_image changes, so disk caches written by an older decoder are not reused.
DECODER_VERSION = "pil-bilinear-v1"
HIGH_BIT_MODES = {"I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


def to_rgb8(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode; 16-bit/float images are stretched from their own min..max to 0..255."""
    if image.mode in HIGH_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float32)
        low, high = float(pixels.min()), float(pixels.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((pixels - low) * scale).round().astype(np.uint8), mode="L")
    return image.convert("RGB")


def load_image(path: str | Path, image_size: int) -> np.ndarray:
    """uint8 [S, S, 3] pixels of one file, resized bilinearly to a square (aspect ratio ignored)."""
    with Image.open(path) as image:
        image.draft(image.mode, (image_size, image_size))  # JPEG only: decode at the smallest scale >= S
        upright = ImageOps.exif_transpose(image)
        rgb = to_rgb8(upright)
    return np.asarray(rgb.resize((image_size, image_size), Image.Resampling.BILINEAR))


def _decoder(image_size: int):
    """A tf.data map function running load_image in a worker thread (PIL releases the GIL while decoding)."""

    def decode(path: bytes) -> np.ndarray:
        return load_image(path.decode(), image_size)

    def tf_decode(path: tf.Tensor, label: tf.Tensor):
        image = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
        image.set_shape([image_size, image_size, 3])
        return image, label

    return tf_decode


def cache_key(frame: pd.DataFrame, image_size: int) -> str:
    """Identifies the decoded content: rows (path, file hash, target), image size and decoder version."""
    digest = hashlib.sha256(f"{DECODER_VERSION}\t{image_size}\n".encode())
    hashes = frame["sha256"] if "sha256" in frame.columns else [""] * len(frame)
    for path, sha256, target in zip(frame["path"], hashes, frame["target"]):
        digest.update(f"{path}\t{sha256}\t{target}\n".encode())
    return digest.hexdigest()[:24]


def _data_roots(frame: pd.DataFrame) -> set[Path]:
    """The data set folders the frame's images live in (from path minus relpath, else the image folders)."""
    if "relpath" in frame.columns:
        return {Path(path).parents[len(Path(rel).parts) - 1].resolve() for path, rel in zip(frame["path"], frame["relpath"])}
    return {Path(path).parent.resolve() for path in frame["path"]}


def _fill_file_cache(dataset: tf.data.Dataset, prefix: Path) -> None:
    """Write the whole cache under a private name, then rename it into place (index last).

    A partly read epoch, a crash or a second process filling the same cache never leaves a lock file
    or a half-written cache under the final name.
    """
    private = prefix.with_name(f"{prefix.name}.tmp-{uuid.uuid4().hex}")
    try:
        for _ in dataset.cache(str(private)).prefetch(AUTOTUNE):
            pass
        index = Path(f"{private}.index")
        for part in sorted(prefix.parent.glob(f"{private.name}.data-*")):
            os.replace(part, prefix.parent / part.name.replace(private.name, prefix.name))
        os.replace(index, f"{prefix}.index")
    finally:  # TF's writer also deletes its partial files when its iterator dies, maybe on another thread
        for leftover in prefix.parent.glob(f"{private.name}*"):
            leftover.unlink(missing_ok=True)


def _disk_cache(dataset: tf.data.Dataset, frame: pd.DataFrame, image_size: int, directory: Path) -> tf.data.Dataset:
    """A file cache under `directory` (never inside the data folder), filled completely on first use."""
    directory = directory.expanduser().resolve()
    for root in _data_roots(frame):
        if directory.is_relative_to(root):
            raise ValueError(f"cache={directory} is inside the data folder {root}; choose a folder outside the data.")
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / f"cxr-{image_size}px-{cache_key(frame, image_size)}"
    if not Path(f"{prefix}.index").exists():
        _fill_file_cache(dataset, prefix)
    return dataset.cache(str(prefix))


def _cached(dataset: tf.data.Dataset, frame: pd.DataFrame, image_size: int, cache) -> tf.data.Dataset:
    """Apply cache="memory", a cache directory path, or None (decode every epoch)."""
    if cache is None:
        return dataset
    if cache == "memory":
        return dataset.cache()
    return _disk_cache(dataset, frame, image_size, Path(cache))


def make_dataset(
    frame: pd.DataFrame,
    image_size: int,
    batch_size: int,
    training: bool = False,
    augment: bool = False,
    seed: int = 42,
    cache: str | Path | None = "memory",
    augment_strength: float = 1.0,
) -> tf.data.Dataset:
    """(images float32 [B, S, S, 3] in 0..255, labels float32 [B]) batches of the frame's rows.

    Each image is decoded once and cached as uint8; `training` reshuffles every epoch (seeded) after the
    cache, `augment` applies build_augmenter (ranges scaled by `augment_strength`) on the fly. Without `training` batches keep the frame's order.
    """
    if frame.empty:
        raise ValueError("make_dataset got an empty frame; check the subset/split filter.")
    labels = frame["target"].to_numpy(dtype=np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((frame["path"].astype(str).to_numpy(), labels))
    dataset = dataset.map(_decoder(image_size), num_parallel_calls=AUTOTUNE)
    dataset = _cached(dataset, frame, image_size, cache)
    if training:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, num_parallel_calls=AUTOTUNE)
    dataset = dataset.map(lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=AUTOTUNE)
    if augment:
        augmenter = build_augmenter(seed, augment_strength)
        dataset = dataset.map(lambda images, labels: (augmenter(images, training=True), labels), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
