"""Input-pipeline overhead: training from cxrlib.data.make_dataset vs from in-memory tensors.

The same fastops model (ResNet-50, runtime precision) trains, in interleaved rounds, on
(a) one in-memory batch repeated (no input cost at all), (b) make_dataset over real JPEGs with the
memory cache warm, and (c) the same with on-the-fly augmentation. Rates (b) and (c) as a fraction
of (a) are the pipeline's efficiency (goal >= 95%). A second table times the augmenter alone: cxrlib's
single affine warp against the three resampling Keras layers it replaced, as CPU time per batch.
"""
import argparse
import time

from _common import (
    RATE_HEADER,
    Stopwatch,
    append_report,
    fit_rates,
    machine_line,
    markdown_table,
    rate_rows,
    training_frame,
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cxrlib import fastops, models, runtime  # noqa: E402
from cxrlib.data import augment, make_dataset  # noqa: E402


def warm_dataset(frame, size: int, batch_size: int, augment: bool) -> tuple[tf.data.Dataset, float]:
    """make_dataset(training=True) with its memory cache filled; (repeated dataset, fill seconds)."""
    dataset = make_dataset(frame, size, batch_size, training=True, augment=augment, cache="memory")
    with Stopwatch() as fill:
        for _ in dataset:
            pass
    return dataset.repeat(), fill.seconds


def three_layer_augmenter(seed: int) -> keras.Sequential:
    """Baseline: rotation, zoom and shift as three Keras layers that each resample the batch (how cxrlib first warped)."""
    constant = {"fill_mode": "constant", "dtype": "float32"}
    return keras.Sequential([
        keras.layers.RandomRotation(augment.ROTATION_DEGREES / 360, seed=seed, **constant),
        keras.layers.RandomZoom(augment.ZOOM, seed=seed + 1, **constant),
        keras.layers.RandomTranslation(augment.SHIFT, augment.SHIFT, seed=seed + 2, **constant),
        keras.layers.RandomBrightness(augment.BRIGHTNESS, value_range=(0, 255), seed=seed + 3, dtype="float32"),
        keras.layers.RandomContrast(augment.CONTRAST, value_range=(0, 255), seed=seed + 4, dtype="float32"),
    ])


def augmenter_cpu_ms(augmenter, images: np.ndarray, batches: int) -> float:
    """CPU milliseconds of this process per batch, `augmenter` mapped over a tf.data stream of one batch."""
    stream = tf.data.Dataset.from_tensors(images).repeat(batches).map(lambda batch: augmenter(batch, training=True))
    for _ in stream.take(3):
        pass
    started = time.process_time()
    for _ in stream:
        pass
    return (time.process_time() - started) / batches * 1000


def augmenter_rows(size: int, batch_size: int, rounds: int, step_cpu_ms: float) -> list[list]:
    """Interleaved timing of both augmenters; rows: name, CPU ms per batch, ratio, share of a training step."""
    images = np.random.default_rng(0).uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    augmenters = {"three Keras layers (rotation, zoom, translation) + brightness + contrast": three_layer_augmenter(42),
                  "cxrlib: one affine warp + brightness + contrast": augment.build_augmenter(42)}
    times = {name: [] for name in augmenters}
    for _ in range(rounds):
        for name, augmenter in augmenters.items():
            times[name].append(augmenter_cpu_ms(augmenter, images, batches=50))
    baseline = np.median(next(iter(times.values())))
    return [[name, f"{np.median(ms):.1f}", f"{baseline / np.median(ms):.2f}x", f"{np.median(ms) / step_cpu_ms:.1%}"]
            for name, ms in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50", choices=models.ARCHS)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=1024, help="training JPEGs used")
    parser.add_argument("--quick", action="store_true", help="smoke check: 64 px, batch 4, 2 steps, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch_size, args.steps, args.rounds, args.limit = 64, 4, 2, 1, 16
    machine = machine_line()
    precision = runtime.apply_precision(runtime.choose_precision("auto"))
    model = fastops.optimize_for_cpu(models.build_model(args.arch, args.size))
    runtime.apply_precision("float32")
    model.compile(fastops.make_optimizer("adam", 1e-4), "binary_crossentropy")
    frame = training_frame(args.limit)
    plain, fill_seconds = warm_dataset(frame, args.size, args.batch_size, augment=False)
    augmented, _ = warm_dataset(frame, args.size, args.batch_size, augment=True)
    images, labels = next(iter(plain))
    in_memory = tf.data.Dataset.from_tensors((images, labels)).repeat()
    sources = {"in-memory tensors (upper bound)": in_memory, "make_dataset, cached": plain,
               "make_dataset, cached + augmentation": augmented}
    for data in sources.values():
        model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    results = {name: [] for name in sources}
    for _ in range(args.rounds):
        for name, data in sources.items():
            results[name].append(fit_rates(model, data, args.steps, args.batch_size))
            print(name, results[name][-1], flush=True)
    rows = rate_rows(results, baseline="in-memory tensors (upper bound)")
    step_cpu_ms = args.batch_size / np.median([cpu for _, cpu in results["in-memory tensors (upper bound)"]]) * 1000
    augmenters = augmenter_rows(args.size, args.batch_size, args.rounds, step_cpu_ms)
    body = (
        f"{args.arch} at {args.size} px, batch {args.batch_size}, {precision}, fastops; {len(frame)} training JPEGs, "
        f"{args.steps} steps per round, {args.rounds} interleaved rounds. Decoding them into the memory cache "
        f"(first epoch only) ran at {len(frame) / fill_seconds:.0f} images/s.\n\n"
        + markdown_table(["training data source", *RATE_HEADER], rows)
        + f"\n\nThe augmenter alone, mapped over one {args.batch_size}-image batch in tf.data (median of "
        f"{args.rounds} interleaved rounds of 50 batches), against a training step's {step_cpu_ms:.0f} CPU ms:\n\n"
        + markdown_table(["augmenter", "CPU ms per batch", "speed-up", "of a training step's CPU time"], augmenters)
    )
    append_report("Input pipeline efficiency", body, machine, write=not args.quick)


if __name__ == "__main__":
    main()
