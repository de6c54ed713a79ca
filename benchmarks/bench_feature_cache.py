"""Frozen-base protocol (10 epochs): feature-cached head training vs recomputing the base every epoch.

Both paths start from the same seeded model (cxrlib.models.build_model, frozen base) and see the same
seeded batch order, JPEGs decoded once into memory in both:
(a) recompute: fit the whole model on make_dataset for `--epochs`, then predict the test images;
(b) cached: cxrlib.features.extract_features once per subset, train models.head_of(model) on
    features.feature_dataset for `--epochs`, then predict the test features.
Reports end-to-end wall time of each path, the speed-up, and how far the test predictions differ.
"""
import argparse

import keras
import numpy as np

from _common import DATA_DIR, Stopwatch, append_report, machine_line, markdown_table, training_frame

from cxrlib import fastops, features, models, runtime  # noqa: E402
from cxrlib.contract import targets_of  # noqa: E402
from cxrlib.data import make_dataset  # noqa: E402


def test_frame(limit: int | None):
    """Rows (path, label, target) of the Kaggle test split, a seeded sample of `limit`."""
    import pandas as pd

    manifest = pd.read_csv(DATA_DIR / "MANIFEST.csv")
    frame = manifest[manifest["split"] == "test"].copy()
    frame["path"] = [str(DATA_DIR / s / l / f) for s, l, f in zip(frame["split"], frame["label"], frame["filename"])]
    frame["target"] = targets_of(frame["label"])
    if limit and limit < len(frame):
        frame = frame.sample(n=limit, random_state=0)
    return frame[["path", "label", "target"]].reset_index(drop=True)


def seeded_model(arch: str, size: int, seed: int) -> keras.Model:
    """The same frozen-base model (weights and dropout seeds) every call."""
    keras.utils.set_random_seed(seed)
    return fastops.optimize_for_cpu(models.build_model(arch, size, weights=None, train_base=False))


def recompute_path(model, train, test, size, batch_size, epochs, seed) -> np.ndarray:
    """Fit the full model (base recomputed every epoch); test probabilities."""
    model.compile(fastops.make_optimizer("adam", 1e-3), "binary_crossentropy")
    model.fit(make_dataset(train, size, batch_size, training=True, seed=seed), epochs=epochs, verbose=0)
    return model.predict(make_dataset(test, size, batch_size), verbose=0)[:, 0]


def cached_path(model, train, test, size, batch_size, epochs, seed) -> np.ndarray:
    """Extract pooled features once, fit the head on them; test probabilities."""
    extractor = features.feature_model(model)
    train_features = features.extract_features(extractor, train, size, batch_size, desc="train features")
    test_features = features.extract_features(extractor, test, size, batch_size, desc="test features")
    head = models.head_of(model)
    head.compile(fastops.make_optimizer("adam", 1e-3), "binary_crossentropy")
    head.fit(features.feature_dataset(train_features, train["target"].to_numpy(), batch_size, training=True, seed=seed),
             epochs=epochs, verbose=0)
    return head.predict(test_features, batch_size=batch_size, verbose=0)[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50", choices=models.ARCHS)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="training JPEGs (default: all); test gets limit/4")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="smoke check: 64 px, 32 images, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.size, args.limit, args.epochs, args.batch_size = 64, 32, 2, 8
    machine = machine_line()
    precision = runtime.choose_precision("auto")
    runtime.apply_precision(precision)
    train = training_frame(args.limit)
    test = test_frame(args.limit // 4 if args.limit else None)
    run = (args.size, args.batch_size, args.epochs, args.seed)
    with Stopwatch() as recompute:
        recomputed = recompute_path(seeded_model(args.arch, args.size, args.seed), train, test, *run)
    keras.backend.clear_session()
    with Stopwatch() as cached:
        from_cache = cached_path(seeded_model(args.arch, args.size, args.seed), train, test, *run)
    runtime.apply_precision("float32")
    difference = np.abs(recomputed - from_cache)
    same_label = np.mean((recomputed >= 0.5) == (from_cache >= 0.5))
    rows = [["recompute the base every epoch", f"{recompute.seconds:.0f}", "1.00x"],
            ["feature cache (extract once, train head)", f"{cached.seconds:.0f}",
             f"{recompute.seconds / cached.seconds:.1f}x"]]
    body = (
        f"{args.arch} at {args.size} px, frozen base (random init: no ImageNet weights offline), {precision}, batch "
        f"{args.batch_size}, {args.epochs} epochs, {len(train)} training / {len(test)} test JPEGs, seed {args.seed}.\n\n"
        + markdown_table(["path", "wall time s (end to end)", "speed-up"], rows)
        + f"\n\nTest predictions: max |difference| {difference.max():.2e}, mean {difference.mean():.2e}; "
        f"same label at 0.5 for {same_label:.1%} of test images."
    )
    append_report("Feature cache vs recomputing the frozen base", body, machine, write=not args.quick)


if __name__ == "__main__":
    main()
