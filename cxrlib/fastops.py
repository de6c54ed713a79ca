"""CPU training-speed fixes for Keras 3 on the TensorFlow backend.

Keras 3 applies Adam with about a dozen element-wise ops per variable and runs BatchNormalization
as separate moments/normalize ops; tf_keras used the fused `ResourceApplyAdam` and
`FusedBatchNormV3` kernels. The classes here restore those kernels with identical mathematics.
TensorFlow's CPU `Conv2DBackpropInput` (Eigen, used when oneDNN is off, e.g. on AMD CPUs) is several
times slower than a forward convolution at the small spatial sizes of the last ResNet stage;
`FastGradConv2D` computes the same gradients as a forward convolution or a matmul.

`optimize_for_cpu` switches a model's layers to these classes in place (cxrlib.train does so only when no
GPU is visible); `standard_layers` switches them back while a model is saved, so saved files hold only
Keras' own layers and load with plain `keras.saving.load_model`. The classes stay registered so that
files saved by earlier versions (which named them) still load after `import cxrlib.fastops`.

Keras internals relied on (no public API exists; tests/test_fastops.py fails if Keras changes them):
`Adam._momentums`, `Adam._velocities` and `Optimizer._get_variable_index` (the slot variables of a
variable, for the fused Adam kernel), and `Conv2D.convolution_op` as the method `Conv2D.call` computes
the convolution with (the hook FastGradConv2D overrides).

The largest CPU gain is outside this module: TensorFlow enables oneDNN by default only on recent
Intel CPUs; elsewhere set `TF_ENABLE_ONEDNN_OPTS=1` before TensorFlow is imported
(reports/benchmarks.md has the measurements).
"""
import contextlib
import warnings
from collections.abc import Iterator

import keras
import tensorflow as tf

_PACKAGE = "cxrlib"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """Adam whose dense update is TensorFlow's single fused `ResourceApplyAdam` kernel."""

    def update_step(self, gradient, variable, learning_rate):
        """Apply one Adam step; falls back to Keras' op-by-op update where the kernel cannot."""
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices) or keras.backend.backend() != "tensorflow":
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization computed by the fused `FusedBatchNormV3` kernel for 4-D channels-last inputs."""

    def _can_fuse(self, inputs, training, mask) -> bool:
        """Whether the fused kernel computes exactly what Keras' BatchNormalization would here."""
        rank = len(inputs.shape)
        return (
            keras.backend.backend() == "tensorflow"
            and rank == 4
            and self.axis in (-1, rank - 1)
            and mask is None
            and not self.renorm
            and not self.synchronized
            and (training is None or isinstance(training, bool))
        )

    def call(self, inputs, training=None, mask=None):
        """Normalize with batch statistics when training a trainable layer, else the moving ones."""
        if not self._can_fuse(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        if inputs.dtype not in (tf.float32, tf.bfloat16):
            inputs = tf.cast(inputs, tf.float32)
        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        if training and self.trainable:
            outputs = self._normalize_with_batch_statistics(inputs, scale, offset)
        else:
            outputs = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=scale,
                offset=offset,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                is_training=False,
            )[0]
        return tf.cast(outputs, self.compute_dtype)

    def _normalize_with_batch_statistics(self, inputs, scale, offset):
        """Training-mode normalization; updates the moving statistics as Keras does (biased variance)."""
        outputs, mean, unbiased_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=scale,
            offset=offset,
            mean=tf.constant([], tf.float32),
            variance=tf.constant([], tf.float32),
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            is_training=True,
        )
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance = unbiased_variance * tf.maximum(count - 1.0, 0.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return outputs


def _flipped_transposed(kernel):
    """The kernel whose stride-1 SAME convolution is the transpose of `kernel`'s (odd sizes)."""
    return tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])


@tf.custom_gradient
def _conv_same_stride1(inputs, kernel):
    """Stride-1 SAME conv2d; the input gradient is a forward conv with the flipped, transposed kernel."""

    def gradient(upstream):
        d_inputs = tf.nn.conv2d(upstream, _flipped_transposed(kernel), 1, "SAME")
        d_kernel = tf.raw_ops.Conv2DBackpropFilter(
            input=inputs, filter_sizes=tf.shape(kernel), out_backprop=upstream, strides=[1, 1, 1, 1], padding="SAME"
        )
        return d_inputs, d_kernel

    return tf.nn.conv2d(inputs, kernel, 1, "SAME"), gradient


def _conv_1x1(inputs, kernel, stride: int):
    """1x1 conv2d (any stride, SAME or VALID alike) whose gradients are matmuls."""

    @tf.custom_gradient
    def conv(inputs, kernel):
        def gradient(upstream):
            channels_in, channels_out = kernel.shape[2], kernel.shape[3]
            flat_upstream = tf.reshape(upstream, [-1, channels_out])
            matrix = tf.reshape(kernel, [channels_in, channels_out])
            sampled = inputs[:, ::stride, ::stride, :]
            d_sampled = tf.reshape(tf.matmul(flat_upstream, matrix, transpose_b=True), tf.shape(sampled))
            d_inputs = d_sampled if stride == 1 else tf.raw_ops.StridedSliceGrad(
                shape=tf.shape(inputs), begin=[0, 0, 0, 0], end=tf.shape(inputs),
                strides=[1, stride, stride, 1], dy=d_sampled,
            )
            d_matrix = tf.matmul(tf.reshape(sampled, [-1, channels_in]), flat_upstream, transpose_a=True)
            return d_inputs, tf.reshape(d_matrix, tf.shape(kernel))

        return tf.nn.conv2d(inputs, kernel, stride, "VALID"), gradient

    return conv(inputs, kernel)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FastGradConv2D(keras.layers.Conv2D):
    """Conv2D whose backward pass avoids TensorFlow's slow CPU `Conv2DBackpropInput` kernel.

    Covers 1x1 kernels (any stride) and odd square kernels with stride 1 and SAME padding, the only
    convolutions in ResNet-50 and DenseNet-121 that need an input gradient; others use Keras' op.
    """

    def _fast_path(self, inputs) -> str | None:
        """"1x1", "same", or None when the standard convolution must be used."""
        if keras.backend.backend() != "tensorflow" or self.data_format != "channels_last" or self.groups != 1:
            return None
        if tuple(self.dilation_rate) != (1, 1) or len(inputs.shape) != 4:
            return None
        kernel_size, strides = tuple(self.kernel_size), tuple(self.strides)
        if kernel_size == (1, 1) and strides[0] == strides[1]:
            return "1x1"
        if kernel_size[0] == kernel_size[1] and kernel_size[0] % 2 and strides == (1, 1) and self.padding == "same":
            return "same"
        return None

    def convolution_op(self, inputs, kernel):
        """The convolution of `inputs` with `kernel`, with the fast gradient where it applies."""
        path = self._fast_path(inputs)
        if path is None:
            return super().convolution_op(inputs, kernel)
        inputs = tf.convert_to_tensor(inputs)
        kernel = tf.cast(tf.convert_to_tensor(kernel), inputs.dtype)
        if path == "1x1":
            return _conv_1x1(inputs, kernel, self.strides[0])
        return _conv_same_stride1(inputs, kernel)


def make_optimizer(name: str, learning_rate, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name ("adam" gives the fused `FusedAdam`) with a rate or schedule.

    `weight_decay` > 0 is Keras' decoupled decay (each step multiplies a weight by 1 - rate x decay, as AdamW).
    """
    decay = {"weight_decay": weight_decay} if weight_decay else {}
    if name.lower() == "adam":
        return FusedAdam(learning_rate=learning_rate, **decay)
    optimizer = keras.optimizers.get(name)
    return optimizer.__class__.from_config({**optimizer.get_config(), "learning_rate": learning_rate, **decay})


# Keras layer class -> the fastops subclass optimize_for_cpu switches it to.
CPU_LAYER_CLASSES = {
    keras.layers.BatchNormalization: FusedBatchNormalization,
    keras.layers.Conv2D: FastGradConv2D,
}
# fastops subclass -> the Keras layer class standard_layers switches it back to.
STANDARD_LAYER_CLASSES = {faster: standard for standard, faster in CPU_LAYER_CLASSES.items()}


def nested_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of `model`, descending into nested models (through the public `Model.layers`)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from nested_layers(layer)


def _switch_classes(model: keras.Model, classes: dict) -> list[tuple[keras.layers.Layer, type]]:
    """Give each layer whose exact class is a key of `classes` the mapped class; returns (layer, old class)."""
    switched = [(layer, type(layer)) for layer in nested_layers(model) if type(layer) in classes]
    for layer, old_class in switched:
        layer.__class__ = classes[old_class]
    return switched


@contextlib.contextmanager
def _switched(model: keras.Model, classes: dict):
    """`model` with its layers switched by `classes` while the block runs, then switched back."""
    switched = _switch_classes(model, classes)
    try:
        yield model
    finally:
        for layer, old_class in switched:
            layer.__class__ = old_class


def optimize_for_cpu(model: keras.Model) -> keras.Model:
    """Switch BatchNormalization and Conv2D layers (nested models included) to the fast subclasses, in place.

    The layers keep their weights, names, trainable flags and graph; the subclasses only override how
    the output (and its gradient) is computed, so the model computes the same function. Returns the
    same model object. Save it inside `standard_layers` so the file names only Keras' own layers.
    """
    _switch_classes(model, CPU_LAYER_CLASSES)
    return model


def standard_layers(model: keras.Model):
    """Context manager: `model` with Keras' own layer classes while the block runs (to save it, or its weights).

    Keras names the weights in a file after the layer classes, so saving and loading both happen inside it.
    """
    return _switched(model, STANDARD_LAYER_CLASSES)


def load_weights(model: keras.Model, path) -> None:
    """Load a weights or .keras file into `model`, whichever layer classes it has now.

    Files are saved with Keras' own classes (`standard_layers`); files saved by earlier versions of this
    project name the fastops classes and are read with those.
    """
    try:
        with warnings.catch_warnings(record=True) as caught, standard_layers(model):
            model.load_weights(path)
    except ValueError:  # the attempt's warnings ("... retain their freshly-initialized weights") do not apply
        with _switched(model, CPU_LAYER_CLASSES):
            model.load_weights(path)
        return
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
