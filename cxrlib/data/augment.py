"""Training-time augmentation: one random affine warp (rotation, zoom, shift) plus brightness and contrast jitter.

Keras' RandomRotation, RandomZoom and RandomTranslation each resample the whole batch; composing the
three into one matrix resamples it once, which keeps augmentation off the critical path of a 2-core
CPU (benchmarks/bench_input_pipeline.py measures it). The ranges mimic how positioning and exposure vary
between acquisitions, so the model does not rely on one hospital's framing or film processing.
"""
import math

import keras
from keras import ops

ROTATION_DEGREES = 10
ZOOM = 0.15
SHIFT = 0.1
BRIGHTNESS = 0.1  # fraction of the 0..255 range
CONTRAST = 0.3
MAX_STRENGTH = 3.0  # keeps zoom (0.15 x strength) below 1 and rotation below 180 degrees


@keras.saving.register_keras_serializable(package="cxrlib")
class RandomAffine(keras.layers.Layer):
    """Per-image random rotation (±degrees), isotropic zoom (1±zoom) and shift (±shift of the size).

    All three are folded into a single output-to-input matrix about the image centre and applied with
    one bilinear `keras.ops.image.affine_transform`; uncovered borders are filled with black.
    Images are [B, H, W, C], channels last; outside training the layer returns its input.
    """

    def __init__(self, degrees: float = ROTATION_DEGREES, zoom: float = ZOOM, shift: float = SHIFT,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not (0 <= degrees < 180 and 0 <= zoom < 1 and 0 <= shift < 1):
            raise ValueError(f"RandomAffine needs 0 <= degrees < 180, 0 <= zoom < 1, 0 <= shift < 1; "
                             f"got degrees={degrees}, zoom={zoom}, shift={shift}")
        self.degrees, self.zoom, self.shift, self.seed = degrees, zoom, shift, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, batch, limit: float):
        return keras.random.uniform((batch,), -limit, limit, seed=self.seed_generator)

    def transform_matrix(self, batch, height, width):
        """[B, 8] output-to-input transforms in the layout keras.ops.image.affine_transform expects."""
        width, height = ops.cast(width, "float32"), ops.cast(height, "float32")
        angle = self._uniform(batch, math.radians(self.degrees))
        scale = 1.0 + self._uniform(batch, self.zoom)  # > 1 samples a wider area: zooms out
        shift_x = self._uniform(batch, self.shift) * width
        shift_y = self._uniform(batch, self.shift) * height
        centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        a0, a1 = scale * ops.cos(angle), -scale * ops.sin(angle)
        b0, b1 = scale * ops.sin(angle), scale * ops.cos(angle)
        a2 = centre_x + shift_x - (a0 * centre_x + a1 * centre_y)
        b2 = centre_y + shift_y - (b0 * centre_x + b1 * centre_y)
        zeros = ops.zeros_like(angle)
        return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        transform = self.transform_matrix(shape[0], shape[1], shape[2])
        return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="constant",
                                          fill_value=0, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "degrees": self.degrees, "zoom": self.zoom, "shift": self.shift,
                "seed": self.seed}


def build_augmenter(seed: int = 42, strength: float = 1.0) -> keras.layers.Pipeline:
    """Geometric, brightness and contrast jitter for raw 0..255 images, for use inside tf.data.

    `strength` scales every range (1: the ranges above; a search tunes it). Pinned to float32 so a global
    mixed-precision policy never changes the pipeline's output dtype.
    """
    if not 0 < strength <= MAX_STRENGTH:
        raise ValueError(f"augmentation strength {strength} is outside (0, {MAX_STRENGTH}]; 1 gives the default ranges")
    return keras.layers.Pipeline(
        [
            RandomAffine(ROTATION_DEGREES * strength, ZOOM * strength, SHIFT * strength, seed=seed, dtype="float32"),
            keras.layers.RandomBrightness(BRIGHTNESS * strength, value_range=(0, 255), seed=seed + 1, dtype="float32"),
            keras.layers.RandomContrast(CONTRAST * strength, value_range=(0, 255), seed=seed + 2, dtype="float32"),
        ],
        name="augmenter",
    )
