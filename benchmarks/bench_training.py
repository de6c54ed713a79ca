"""Training throughput: Keras 3 + cxrlib.fastops vs the reference study's tf_keras pipeline.

Two tables per image size, measured in one process with interleaved rounds (A/B/A/B):
1. model only, random in-memory tensors: Keras 3 plain / + fused Adam / + fused BN / + both
   (/ + bf16 where the CPU has native bf16) and tf_keras;
2. end to end on real JPEGs: the reference pipeline (tf_keras model, Adam, float32,
   ImageDataGenerator.flow_from_dataframe with augmentation) vs ours (cxrlib.models + fastops,
   runtime.choose_precision(), cxrlib.data.make_dataset with augmentation, memory cache warm).
"""
import argparse

import numpy as np

from _common import (
    Stopwatch,
    append_report,
    RATE_HEADER,
    fit_rates,
    machine_line,
    markdown_table,
    rate_rows,
    training_frame,
)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from cxrlib import fastops, models, runtime  # noqa: E402
from cxrlib.data import make_dataset  # noqa: E402
from cxrlib.data import augment  # noqa: E402

ARCH = "resnet50"


def keras3_model(size: int, fused_adam: bool, layer_swaps: tuple = (), precision: str = "float32") -> keras.Model:
    """cxrlib.models.build_model (from scratch) with some fastops layer classes, compiled with Adam.

    `layer_swaps` holds (Keras class, fastops class) pairs; all of fastops' pairs is optimize_for_cpu.
    """
    runtime.apply_precision(precision)
    try:
        model = models.build_model(ARCH, size)
    finally:
        runtime.apply_precision("float32")
    swaps = dict(layer_swaps)
    for layer in model._flatten_layers(include_self=False):
        layer.__class__ = swaps.get(type(layer), type(layer))
    optimizer = fastops.FusedAdam(1e-4) if fused_adam else keras.optimizers.Adam(1e-4)
    model.compile(optimizer, "binary_crossentropy")
    return model


def tf_keras_model(size: int):
    """The reference study's model in tf_keras: ResNet50 base, GAP, Dense(1024), Dropout, sigmoid; Adam."""
    import tf_keras

    base = tf_keras.applications.ResNet50(weights=None, include_top=False, input_shape=(size, size, 3))
    inputs = tf_keras.Input((size, size, 3))
    x = tf_keras.layers.GlobalAveragePooling2D()(base(inputs))
    x = tf_keras.layers.Dense(1024, activation="relu")(x)
    x = tf_keras.layers.Dropout(0.5)(x)
    outputs = tf_keras.layers.Dense(1, activation="sigmoid")(x)
    model = tf_keras.Model(inputs, outputs)
    model.compile(tf_keras.optimizers.Adam(1e-4), "binary_crossentropy")
    return model


def reference_generator(frame, size: int, batch_size: int):
    """ImageDataGenerator.flow_from_dataframe with the augmentation cxrlib.data mirrors (rotation, zoom, shift)."""
    import tf_keras

    generator = tf_keras.preprocessing.image.ImageDataGenerator(
        rotation_range=augment.ROTATION_DEGREES,
        zoom_range=augment.ZOOM,
        width_shift_range=augment.SHIFT,
        height_shift_range=augment.SHIFT,
        fill_mode="constant",
        preprocessing_function=tf_keras.applications.resnet50.preprocess_input,
    )
    return generator.flow_from_dataframe(
        frame, x_col="path", y_col="label", target_size=(size, size), class_mode="binary",
        batch_size=batch_size, shuffle=True, seed=0,
    )


def random_batches(size: int, batch_size: int) -> tf.data.Dataset:
    """One fixed random batch of raw pixels, repeated forever."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    labels = rng.integers(0, 2, (batch_size, 1)).astype("float32")
    return tf.data.Dataset.from_tensors((images, labels)).repeat()


FUSED_BN = ((keras.layers.BatchNormalization, fastops.FusedBatchNormalization),)
FAST_CONV = ((keras.layers.Conv2D, fastops.FastGradConv2D),)
ALL_LAYERS = tuple(fastops.CPU_LAYER_CLASSES.items())


def ablation_variants(size: int) -> dict:
    """Model-only variants: name -> zero-argument builder."""
    variants = {
        "Keras 3, float32, Adam": lambda: keras3_model(size, False),
        "+ fused Adam": lambda: keras3_model(size, True),
        "+ fused BN": lambda: keras3_model(size, False, FUSED_BN),
        "+ fast conv gradients": lambda: keras3_model(size, False, FAST_CONV),
        "+ all three (fastops)": lambda: keras3_model(size, True, ALL_LAYERS),
    }
    if runtime.has_fast_bf16():
        variants["fastops + mixed_bfloat16"] = lambda: keras3_model(size, True, ALL_LAYERS, "mixed_bfloat16")
    variants["tf_keras, float32, Adam"] = lambda: tf_keras_model(size)
    return variants


def interleaved(runs: dict, rounds: int) -> dict:
    """Call each zero-argument measurement once per round, round-robin; name -> list of results."""
    results = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(run())
            print(name, results[name][-1], flush=True)
    return results


def ablation_table(size: int, batch_size: int, steps: int, rounds: int) -> str:
    """Model-only images/s table for one image size."""
    data = random_batches(size, batch_size)
    built = {name: build() for name, build in ablation_variants(size).items()}
    for model in built.values():
        model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    results = interleaved(
        {name: (lambda m=model: fit_rates(m, data, steps, batch_size)) for name, model in built.items()}, rounds
    )
    rows = rate_rows(results, baseline="Keras 3, float32, Adam")
    return markdown_table(["variant (model only, in-memory)", *RATE_HEADER], rows)


def end_to_end_table(size: int, batch_size: int, steps: int, rounds: int, limit: int) -> str:
    """Reference pipeline vs ours on real JPEGs, images/s."""
    frame = training_frame(limit)
    precision = runtime.choose_precision("auto")
    ours = keras3_model(size, True, ALL_LAYERS, precision)
    dataset = make_dataset(frame, size, batch_size, training=True, augment=True, cache="memory")
    with Stopwatch() as fill:
        for _ in dataset:
            pass
    ours_data = dataset.repeat()
    reference = tf_keras_model(size)
    reference_data = reference_generator(frame, size, batch_size)
    ours.fit(ours_data, steps_per_epoch=2, epochs=1, verbose=0)
    reference.fit(reference_data, steps_per_epoch=2, epochs=1, verbose=0)
    results = interleaved(
        {
            "reference: tf_keras + ImageDataGenerator, float32": lambda: fit_rates(
                reference, reference_data, steps, batch_size),
            f"ours: Keras 3 + fastops + make_dataset, {precision}": lambda: fit_rates(
                ours, ours_data, steps, batch_size),
        },
        rounds,
    )
    names = list(results)
    rows = rate_rows(results, baseline=names[0])
    table = markdown_table(["pipeline (real JPEGs, augmented)", *RATE_HEADER], rows)
    return (
        f"{table}\n\nSpeed-up ours / reference: **{rows[1][3]} wall, {rows[1][5]} per CPU-second** ({len(frame)} "
        f"training JPEGs; make_dataset's one-off decode into the memory cache took {fill.seconds:.1f} s and is not "
        f"in the rate)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 96])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=512, help="training JPEGs used end to end")
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke check: 64 px, batch 4, 2 steps, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.batch_size, args.steps, args.rounds, args.limit = [64], 4, 2, 1, 16
    machine = machine_line()
    for size in args.sizes:
        sections = []
        if not args.skip_ablation:
            sections.append(ablation_table(size, args.batch_size, args.steps, args.rounds))
        sections.append(end_to_end_table(size, args.batch_size, args.steps, args.rounds, args.limit))
        title = f"Training throughput, {ARCH} at {size} px, batch {args.batch_size}"
        append_report(title, "\n\n".join(sections), machine, write=not args.quick)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
