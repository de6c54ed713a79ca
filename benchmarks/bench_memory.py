"""Peak resident memory of a training run: full training split cached in memory + fastops training.

Each architecture runs in its own child process (so ru_maxrss is that run's alone): decode every
Kaggle training JPEG into make_dataset's memory cache at the given size, then train `--steps` steps.
That is the footprint of a full-data run (the cache is the only part that grows with the data).
"""
import argparse
import json
import subprocess
import sys

from _common import append_report, machine_line, markdown_table, training_frame

GIB = 1024


def child(arch: str, size: int, batch_size: int, steps: int, limit: int | None) -> dict:
    """Fill the cache, train, and return the peak memory and what was run."""
    from cxrlib import fastops, models, runtime
    from cxrlib.data import make_dataset

    precision = runtime.apply_precision(runtime.choose_precision("auto"))
    model = fastops.optimize_for_cpu(models.build_model(arch, size))
    runtime.apply_precision("float32")
    model.compile(fastops.make_optimizer("adam", 1e-4), "binary_crossentropy")
    frame = training_frame(limit)
    dataset = make_dataset(frame, size, batch_size, training=True, augment=True, cache="memory")
    for _ in dataset:
        pass
    after_cache = runtime.peak_memory_mb()
    model.fit(dataset.repeat(), steps_per_epoch=steps, epochs=1, verbose=0)
    return {"arch": arch, "images": len(frame), "precision": precision,
            "peak_after_cache_mb": after_cache, "peak_mb": runtime.peak_memory_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["resnet50", "densenet121"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="training JPEGs (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke check: resnet50, 64 px, 16 images, 1 step")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size, args.batch_size, args.steps, args.limit)))
        return
    if args.quick:
        args.archs, args.size, args.batch_size, args.steps, args.limit = ["resnet50"], 64, 4, 1, 16
    machine = machine_line()
    rows = []
    for arch in args.archs:
        command = [sys.executable, __file__, "--child", arch, "--size", str(args.size), "--batch-size",
                   str(args.batch_size), "--steps", str(args.steps)]
        if args.limit:
            command += ["--limit", str(args.limit)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        rows.append([arch, result["images"], result["precision"], f"{result['peak_after_cache_mb'] / GIB:.2f}",
                     f"{result['peak_mb'] / GIB:.2f}", "yes" if result["peak_mb"] < 8 * GIB else "**no**"])
        print(rows[-1], flush=True)
    body = (
        f"{args.size} px, batch {args.batch_size}, Adam, fastops, augmentation on, {args.steps} training steps after "
        f"the cache fill; one child process per architecture.\n\n"
        + markdown_table(["arch", "cached JPEGs", "precision", "peak GiB after cache fill", "peak GiB training",
                          "< 8 GiB"], rows)
    )
    append_report("Peak resident memory of training", body, machine, write=not args.quick)


if __name__ == "__main__":
    main()
