"""Where a training step's CPU time goes: TensorFlow profiler op statistics, summed by op type.

Profiles `--steps` fit steps of ResNet-50 (cxrlib.models) at `--size` px on one random batch, as
plain Keras 3 or with fastops (`--fastops`), and prints self time per op type and the top ops of the
slowest type. Prints only (it is a diagnosis tool, not a benchmark table).
"""
import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np

import _common  # noqa: F401  (puts the repository on sys.path)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_plugin  # noqa: E402

from cxrlib import fastops, models  # noqa: E402


def op_rows(steps: int, size: int, batch_size: int, use_fastops: bool) -> list[dict]:
    """Profiler rows (type, operation, total_self_time in us, ...) of `steps` training steps."""
    model = models.build_model("resnet50", size)
    if use_fastops:
        fastops.optimize_for_cpu(model)
    model.compile(fastops.make_optimizer("adam", 1e-4) if use_fastops else keras.optimizers.Adam(1e-4),
                  "binary_crossentropy")
    rng = np.random.default_rng(0)
    batch = (rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32"),
             rng.integers(0, 2, (batch_size, 1)).astype("float32"))
    data = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    logdir = tempfile.mkdtemp(prefix="cxr-profile-")
    tf.profiler.experimental.start(logdir)
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    tf.profiler.experimental.stop()
    trace = sorted(Path(logdir).rglob("*.xplane.pb"))[-1]
    raw, _ = profiler_plugin.xspace_to_tools_data([str(trace)], "framework_op_stats")
    table = json.loads(raw)[0]
    columns = [column["id"] for column in table["cols"]]
    return [dict(zip(columns, [c["v"] if isinstance(c, dict) else c for c in row["c"]])) for row in table["rows"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--fastops", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke check: 64 px, batch 4, 1 step")
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch_size, args.steps = 64, 4, 1
    rows = [row for row in op_rows(args.steps, args.size, args.batch_size, args.fastops) if row["type"] != "IDLE"]
    by_type = collections.Counter()
    for row in rows:
        by_type[row["type"]] += row["total_self_time"]
    total = sum(by_type.values())
    print(f"busy self time {total / 1e6 / args.steps:.2f} s per step ({'fastops' if args.fastops else 'plain Keras 3'})")
    for op_type, micros in by_type.most_common(12):
        print(f"  {op_type:28s} {micros / 1e6 / args.steps:7.3f} s/step {micros / total:6.1%}")
    slowest = by_type.most_common(1)[0][0]
    print(f"top {slowest} ops:")
    for row in sorted((r for r in rows if r["type"] == slowest), key=lambda r: -r["total_self_time"])[:6]:
        print(f"  {row['total_self_time'] / 1e6 / args.steps:7.3f} s/step  {row['operation'][-80:]}")


if __name__ == "__main__":
    main()
