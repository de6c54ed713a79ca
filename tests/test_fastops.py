"""cxrlib.fastops computes exactly what the standard Keras path computes, only with fused kernels."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from cxrlib import fastops


def _images(n=8, size=6, channels=3, seed=0):
    return np.random.default_rng(seed).normal(2.0, 3.0, (n, size, size, channels)).astype("float32")


def _tiny_classifier(seed=0, frozen_base=False):
    """A nested model like build_model's: a conv+BN backbone inside an outer functional model."""
    keras.utils.set_random_seed(seed)
    inner_in = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inner_in)
    h = keras.layers.BatchNormalization(momentum=0.9)(h)
    h = keras.layers.Activation("relu")(h)
    # No bias before BN: its true gradient is zero, so Adam would only amplify rounding noise.
    h = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(h)
    h = keras.layers.BatchNormalization(axis=3, center=False)(h)
    base = keras.Model(inner_in, h, name="base")
    base.trainable = not frozen_base
    outer_in = keras.Input((6, 6, 3))
    features = keras.layers.GlobalAveragePooling2D()(base(outer_in, training=False if frozen_base else None))
    out = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(keras.layers.Dense(8, activation="relu")(features))
    return keras.Model(outer_in, out)


def _bn_pair(**kwargs):
    standard = keras.layers.BatchNormalization(momentum=0.9, **kwargs)
    fused = fastops.FusedBatchNormalization(momentum=0.9, **kwargs)
    for layer in (standard, fused):
        layer.build((None, 6, 6, 3))
    rng = np.random.default_rng(1)
    weights = [rng.normal(1.0, 0.3, w.shape).astype("float32") for w in standard.weights]
    weights[-1] = np.abs(weights[-1])  # moving variance must be positive
    standard.set_weights(weights)
    fused.set_weights(weights)
    return standard, fused


@pytest.mark.parametrize("training", [False, True])
def test_fused_batch_norm_matches_keras_forward_and_moving_statistics(training):
    standard, fused = _bn_pair()
    x = _images()
    for _ in range(2):
        np.testing.assert_allclose(fused(x, training=training), standard(x, training=training), atol=1e-5)
    for got, want in zip(fused.get_weights(), standard.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_fused_batch_norm_matches_keras_gradients_in_training_mode():
    standard, fused = _bn_pair()
    x = tf.constant(_images())
    grads = []
    for layer in (standard, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(layer(x, training=True)))
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    for got, want in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_fused_batch_norm_matches_keras_under_mixed_bfloat16():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        standard, fused = _bn_pair()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    x = tf.cast(_images(), "bfloat16")
    for training in (True, False):
        got, want = fused(x, training=training), standard(x, training=training)
        assert got.dtype == want.dtype == tf.bfloat16
        np.testing.assert_allclose(tf.cast(got, "float32"), tf.cast(want, "float32"), atol=0.05)


def test_fused_batch_norm_falls_back_for_inputs_it_cannot_fuse():
    standard = keras.layers.BatchNormalization()
    fused = fastops.FusedBatchNormalization()
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    for layer in (standard, fused):
        layer.build(x.shape)
    np.testing.assert_allclose(fused(x, training=True), standard(x, training=True), atol=1e-6)


@pytest.mark.parametrize(
    "config, fast",
    [
        ({"kernel_size": 1, "strides": 2}, True),
        ({"kernel_size": 1, "padding": "same"}, True),
        ({"kernel_size": 3, "padding": "same"}, True),
        ({"kernel_size": 3, "strides": 2, "padding": "same"}, False),
    ],
    ids=["1x1-stride2", "1x1", "3x3-same", "3x3-stride2-fallback"],
)
def test_fast_grad_conv_matches_keras_outputs_and_gradients(config, fast):
    standard = keras.layers.Conv2D(5, **config)
    faster = fastops.FastGradConv2D(5, **config)
    x = tf.constant(_images(2, size=7))
    for layer in (standard, faster):
        layer.build(x.shape)
    faster.set_weights([w + 0.1 for w in standard.get_weights()])
    standard.set_weights(faster.get_weights())
    assert (faster._fast_path(x) is not None) == fast
    results = []
    for layer in (standard, faster):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x)
            loss = tf.reduce_sum(tf.sin(outputs))
        results.append([outputs, *tape.gradient(loss, [x, layer.kernel, layer.bias])])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_optimize_for_cpu_swaps_nested_batch_norms_and_keeps_outputs():
    model = _tiny_classifier(frozen_base=True)
    x = _images()
    before = [np.asarray(model(x, training=t)) for t in (False, True)]
    trainable_before = [w.path for w in model.trainable_weights]
    assert fastops.optimize_for_cpu(model) is model
    layers = list(fastops.nested_layers(model))
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(norms) == 2 and all(type(layer) is fastops.FusedBatchNormalization for layer in norms)
    assert len(convs) == 2 and all(type(layer) is fastops.FastGradConv2D for layer in convs)
    assert [w.path for w in model.trainable_weights] == trainable_before
    for got, want, t in zip([model(x, training=t) for t in (False, True)], before, (False, True)):
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"training={t}")


def test_frozen_base_keeps_moving_statistics_while_the_head_trains():
    model = fastops.optimize_for_cpu(_tiny_classifier(frozen_base=True))
    frozen = [w.numpy().copy() for w in model.get_layer("base").weights]
    model.compile(fastops.make_optimizer("adam", 1e-2), "binary_crossentropy")
    model.fit(_images(), np.arange(8) % 2, batch_size=4, epochs=1, verbose=0)
    for got, want in zip(model.get_layer("base").weights, frozen):
        np.testing.assert_array_equal(got.numpy(), want)


def _loss_trajectory(model, optimizer, steps=6):
    """Eager training losses and final weights on one fixed batch (no dropout in the tiny model)."""
    x, y = _images(16, seed=3), (np.arange(16) % 2).astype("float32")[:, None]
    loss_fn = keras.losses.BinaryCrossentropy()
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        losses.append(float(loss))
    return losses, model.get_weights()


@pytest.mark.parametrize(
    "learning_rate",
    [1e-2, keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=1, decay_rate=0.5)],
    ids=["constant", "schedule"],
)
def test_fused_path_reproduces_the_standard_training_trajectory(learning_rate):
    losses, weights = _loss_trajectory(_tiny_classifier(seed=5), keras.optimizers.Adam(learning_rate))
    fused_losses, fused_weights = _loss_trajectory(
        fastops.optimize_for_cpu(_tiny_classifier(seed=5)), fastops.make_optimizer("adam", learning_rate)
    )
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(fused_losses, losses, rtol=1e-4, atol=1e-5)
    for got, want in zip(fused_weights, weights):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_make_optimizer_builds_other_optimizers_by_name():
    optimizer = fastops.make_optimizer("SGD", 0.05)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    assert isinstance(fastops.make_optimizer("Adam", 1e-3), fastops.FusedAdam)


def _trained_fast_model():
    """A fastops model after one training step, and the uncompiled view of it that a run saves."""
    model = fastops.optimize_for_cpu(_tiny_classifier(seed=4))
    model.compile(fastops.make_optimizer("adam", 1e-3), "binary_crossentropy")
    model.train_on_batch(_images(), (np.arange(8) % 2).astype("float32"))
    return model, keras.Model(model.input, model.output)


def _layer_types(model):
    return {type(layer) for layer in fastops.nested_layers(model)}


def test_model_saved_inside_standard_layers_holds_only_keras_layers(tmp_path):
    model, view = _trained_fast_model()
    with fastops.standard_layers(view):
        view.save(tmp_path / "model.keras")
    assert {fastops.FusedBatchNormalization, fastops.FastGradConv2D} <= _layer_types(model)  # switched back
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert not _layer_types(loaded) & set(fastops.STANDARD_LAYER_CLASSES)
    assert {keras.layers.BatchNormalization, keras.layers.Conv2D} <= _layer_types(loaded)
    np.testing.assert_allclose(loaded.predict(_images(), verbose=0), model.predict(_images(), verbose=0), atol=1e-6)


def test_standard_layers_switches_back_when_the_block_fails():
    model, _ = _trained_fast_model()
    with pytest.raises(RuntimeError), fastops.standard_layers(model):
        raise RuntimeError("save failed")
    assert {fastops.FusedBatchNormalization, fastops.FastGradConv2D} <= _layer_types(model)


@pytest.mark.parametrize("optimized", [True, False], ids=["into-fastops-model", "into-keras-model"])
def test_weights_load_whichever_layer_classes_saved_them(optimized, tmp_path):
    model, view = _trained_fast_model()
    view.save_weights(tmp_path / "legacy.weights.h5")  # names the fastops classes, as earlier versions did
    with fastops.standard_layers(view):
        view.save_weights(tmp_path / "standard.weights.h5")
    for name in ("legacy", "standard"):
        target = _tiny_classifier(seed=9)
        if optimized:
            fastops.optimize_for_cpu(target)
        fastops.load_weights(target, tmp_path / f"{name}.weights.h5")
        assert (fastops.FusedBatchNormalization in _layer_types(target)) == optimized
        np.testing.assert_allclose(target.predict(_images(), verbose=0), model.predict(_images(), verbose=0),
                                   atol=1e-6, err_msg=name)


def test_models_saved_by_earlier_versions_still_load(tmp_path):
    model, view = _trained_fast_model()
    view.save(tmp_path / "legacy.keras")  # without standard_layers: the file names cxrlib's classes
    loaded = keras.saving.load_model(tmp_path / "legacy.keras")  # registered by importing cxrlib.fastops
    assert fastops.FusedBatchNormalization in _layer_types(loaded)
    np.testing.assert_allclose(loaded.predict(_images(), verbose=0), model.predict(_images(), verbose=0), atol=1e-6)


# --- Keras internals fastops relies on (module docstring): these fail when a Keras upgrade changes them

def test_keras_adam_keeps_slot_variables_where_fused_adam_reads_them():
    variables = [keras.Variable(np.ones((2, 3), "float32")), keras.Variable(np.zeros(4, "float32"))]
    optimizer = keras.optimizers.Adam()
    optimizer.build(variables)
    for variable in variables:
        index = optimizer._get_variable_index(variable)
        assert optimizer._momentums[index].shape == optimizer._velocities[index].shape == variable.shape


def test_keras_conv2d_computes_its_output_with_convolution_op(monkeypatch):
    layer = fastops.FastGradConv2D(2, 3, padding="same")
    calls = []
    original = fastops.FastGradConv2D.convolution_op
    monkeypatch.setattr(fastops.FastGradConv2D, "convolution_op",
                        lambda self, inputs, kernel: calls.append(1) or original(self, inputs, kernel))
    layer(_images(1, size=5))
    assert calls  # otherwise FastGradConv2D's gradients would silently stop being used
