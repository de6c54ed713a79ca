"""Training throughput as a fraction of this machine's measured matmul GFLOP/s.

Measures a large matmul in float32 and bfloat16, counts each model's forward FLOPs per image with the
TensorFlow profiler (training ~ 3x forward: forward + two backward matmuls per layer), then trains
ResNet-50 / DenseNet-121 (cxrlib.models + fastops) on random in-memory batches at each size and
precision, and reports images/s, achieved GFLOP/s and the fraction of the matmul rate.
"""
import argparse
import time

import numpy as np

from _common import append_report, fit_rates, machine_line, markdown_table

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from cxrlib import fastops, models, runtime  # noqa: E402

PRECISION_DTYPE = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16}


def matmul_gflops(dtype, n: int, seconds: float = 3.0) -> tuple[float, float]:
    """(GFLOP per wall second, per CPU second) of repeated n x n matmuls in `dtype` (2 n^3 FLOPs each)."""
    a = tf.cast(tf.random.normal((n, n)), dtype)
    step = tf.function(lambda x: tf.reduce_sum(tf.cast(tf.matmul(x, x), tf.float32)))
    step(a).numpy()
    reps, wall, cpu = 0, time.perf_counter(), time.process_time()
    while reps < 2 or time.perf_counter() - wall < seconds:
        step(a).numpy()
        reps += 1
    flops = 2 * n**3 * reps / 1e9
    return flops / (time.perf_counter() - wall), flops / (time.process_time() - cpu)


def forward_gflops_per_image(arch: str, size: int) -> float:
    """Forward-pass GFLOPs of one image through build_model, counted by the TF profiler."""
    model = models.build_model(arch, size)
    spec = tf.TensorSpec([1, size, size, 3], tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    flops = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    return flops / 1e9


def training_rates(arch: str, size: int, precision: str, batch_size: int, steps: int) -> tuple[float, float]:
    """(images per wall second, per CPU second) of fastops training (Adam) on one random batch repeated."""
    runtime.apply_precision(precision)
    try:
        model = fastops.optimize_for_cpu(models.build_model(arch, size))
    finally:
        runtime.apply_precision("float32")
    model.compile(fastops.make_optimizer("adam", 1e-4), "binary_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    labels = rng.integers(0, 2, (batch_size, 1)).astype("float32")
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    rates = fit_rates(model, data, steps, batch_size)
    keras.backend.clear_session()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(models.ARCHS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 224])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISION_DTYPE))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--quick", action="store_true", help="smoke check: resnet50, 64 px, batch 4, 1 step")
    args = parser.parse_args()
    if args.quick:
        args.archs, args.sizes, args.batch_size, args.steps, args.matmul_n = ["resnet50"], [64], 4, 1, 256
    machine = machine_line()
    peak = {p: matmul_gflops(dtype, args.matmul_n) for p, dtype in PRECISION_DTYPE.items()}
    rows = []
    for arch in args.archs:
        for size in args.sizes:
            forward = forward_gflops_per_image(arch, size)
            keras.backend.clear_session()
            for precision in args.precisions:
                wall, cpu = training_rates(arch, size, precision, args.batch_size, args.steps)
                per_cpu_second = cpu * 3 * forward
                rows.append([arch, size, precision, f"{forward:.2f}", f"{wall:.1f}", f"{cpu:.2f}",
                             f"{per_cpu_second:.0f}", f"{per_cpu_second / peak[precision][1]:.0%}",
                             f"{per_cpu_second / peak['float32'][1]:.0%}"])
                print(rows[-1], flush=True)
    peak_text = ", ".join(f"{p}: {w:.0f} GFLOP/s wall, {c:.0f} GFLOP per CPU-s" for p, (w, c) in peak.items())
    body = (
        f"Matmul {args.matmul_n}x{args.matmul_n}: {peak_text}. Training FLOPs taken as 3x the profiler's forward "
        f"count; batch {args.batch_size}, {args.steps} timed steps each, models built one at a time. Efficiency is "
        f"computed per CPU-second of this process for both the model and the matmul (robust to other jobs' load).\n\n"
        + markdown_table(
            ["arch", "px", "precision", "fwd GFLOP/img", "train img/s wall", "img per CPU-s",
             "GFLOP per CPU-s", "of same-dtype matmul", "of float32 matmul"],
            rows,
        )
    )
    append_report("Training FLOP efficiency", body, machine, write=not args.quick)


if __name__ == "__main__":
    main()
