"""One declared shift on a batch of decoded images (float32 [B, S, S, 3], grey levels 0..255), with tf.image and
Keras ops; the result is clipped to 0..255. Deterministic: the only randomness, noise, is drawn per image from its
own stateless seed."""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from .shifts import REFERENCE, Shift


def crop(images: tf.Tensor, keep: float) -> tf.Tensor:
    """The central ``keep`` share of each side, stretched back to the full frame (bilinear)."""
    batch, size = tf.shape(images)[0], images.shape[1:3]
    margin = (1.0 - keep) / 2.0
    boxes = tf.tile([[margin, margin, 1.0 - margin, 1.0 - margin]], [batch, 1])
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), size, method="bilinear")


def pad(images: tf.Tensor, keep: float) -> tf.Tensor:
    """The image shrunk to ``keep`` of each side (antialiased) and centred on a black frame."""
    height, width = images.shape[1:3]
    inner_height, inner_width = round(keep * height), round(keep * width)
    small = tf.image.resize(images, (inner_height, inner_width), antialias=True)
    return tf.image.pad_to_bounding_box(small, (height - inner_height) // 2, (width - inner_width) // 2, height, width)


def blur(images: tf.Tensor, share: float) -> tf.Tensor:
    """Gaussian blur with SD ``share`` of the image side; edges mirrored first, so no dark rim appears."""
    sigma = share * images.shape[1]
    radius = max(1, math.ceil(3 * sigma))
    mirrored = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    blurred = keras.ops.image.gaussian_blur(mirrored, (2 * radius + 1,) * 2, (sigma, sigma), "channels_last")
    return blurred[:, radius:-radius, radius:-radius, :]


def noise(images: tf.Tensor, sd: float, seeds: tf.Tensor) -> tf.Tensor:
    """Gaussian grey-level noise of SD ``sd``, one field per image from its seed (int32 [B, 2]), equal in the
    channels."""
    shape = (images.shape[1], images.shape[2], 1)
    fields = tf.map_fn(lambda seed: tf.random.stateless_normal(shape, seed), seeds,
                       fn_output_signature=tf.float32)
    return images + sd * fields


def rotate(images: tf.Tensor, degrees: float) -> tf.Tensor:
    """Rotated ``degrees`` anticlockwise about the centre (bilinear); uncovered corners mirrored, not black."""
    batch, (height, width) = tf.shape(images)[0], images.shape[1:3]
    angle = math.radians(degrees)
    a0, a1, b0, b1 = math.cos(angle), -math.sin(angle), math.sin(angle), math.cos(angle)  # output -> input, y down
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    a2, b2 = centre_x - (a0 * centre_x + a1 * centre_y), centre_y - (b0 * centre_x + b1 * centre_y)
    transform = tf.tile([[a0, a1, a2, b0, b1, b2, 0.0, 0.0]], [batch, 1])
    return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect",
                                            data_format="channels_last")


def shift_batch(images, shift: Shift, seeds) -> tf.Tensor:
    """``images`` under ``shift``, clipped to 0..255; ``seeds`` (int32 [B, 2]) seed each image's noise."""
    images = tf.convert_to_tensor(images, tf.float32)
    strength = shift.strength
    changes = {
        REFERENCE: lambda: images,
        "crop": lambda: crop(images, strength),
        "pad": lambda: pad(images, strength),
        "exposure": lambda: images * strength,
        "contrast": lambda: tf.image.adjust_contrast(images, strength),
        "gamma": lambda: 255.0 * tf.image.adjust_gamma(images / 255.0, gamma=strength),
        "blur": lambda: blur(images, strength),
        "noise": lambda: noise(images, strength, tf.convert_to_tensor(seeds, tf.int32)),
        "rotate": lambda: rotate(images, strength),
    }
    if shift.kind not in changes:
        raise ValueError(f"unknown shift kind {shift.kind!r}; use one of {', '.join(changes)} (stress/shifts.yaml)")
    return tf.clip_by_value(changes[shift.kind](), 0.0, 255.0)
