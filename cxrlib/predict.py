"""Predict new chest X-rays with a trained run: P(PNEUMONIA), the label at the run's threshold, Grad-CAM overlays.

    python -m cxrlib.predict RUN_DIR IMAGE_OR_FOLDER... [--out CSV] [--gradcam DIR] [--threshold X] [--batch-size N]

Folders are searched recursively for image files (``cxrlib.data.index.IMAGE_EXTENSIONS``; hidden files are
ignored). A bad input (missing, zero-byte, corrupt, truncated, not an image) is reported on stderr with the
data layer's reason and skipped. Exit status: 0 every image was predicted, 2 some inputs were skipped,
1 nothing could be predicted (or the run directory cannot be used).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.contract import CLASS_NAMES, MODEL_FILE, RUN_RECORD_FILE
from cxrlib.data.index import IMAGE_EXTENSIONS, read_image_facts
from cxrlib.evaluate import predict_labels

COLUMNS = ("path", "probability", "label", "threshold")
TRAIN_HINT = "train it with ./run_all.sh (runs/<profile>/<arch>/seed-<k>/) or notebook 02/03"
EXIT_OK, EXIT_NOTHING_PREDICTED, EXIT_SOME_SKIPPED = 0, 1, 2


class PredictError(ValueError):
    """The run directory or the inputs cannot be used; the message names the file and the fix."""


def model_file(run_dir: str | os.PathLike) -> Path:
    """The run's model.keras, or an error naming what is missing and how to make it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PredictError(f"run directory {run_dir} does not exist; {TRAIN_HINT}, or pass the folder that "
                           f"holds {MODEL_FILE} and {RUN_RECORD_FILE}")
    if not (run_dir / MODEL_FILE).is_file():
        replicates = sorted(path.parent.name for path in run_dir.glob(f"*/{MODEL_FILE}"))
        fix = f"pass one of its run folders ({', '.join(replicates)})" if replicates else TRAIN_HINT
        raise PredictError(f"{run_dir / MODEL_FILE} is missing; {fix}")
    return run_dir / MODEL_FILE


def run_threshold(run_dir: str | os.PathLike) -> float:
    """The decision threshold the run chose on its validation split (run.json `threshold.value`)."""
    record_path = Path(run_dir) / RUN_RECORD_FILE
    fix = f"{TRAIN_HINT} (the threshold is set when training finishes), or give a threshold (--threshold X)"
    try:
        value = json.loads(record_path.read_text()).get("threshold", {}).get("value")
    except FileNotFoundError:
        raise PredictError(f"{record_path} is missing; {fix}") from None
    except (json.JSONDecodeError, AttributeError) as error:
        raise PredictError(f"{record_path} is not a run record ({error}); {fix}") from None
    if value is None:
        raise PredictError(f"{record_path} holds no threshold value; {fix}")
    return float(value)


def collect_images(inputs) -> tuple[list[str], pd.DataFrame]:
    """Readable image files among files and folders (recursive, in order, once each) and the skipped `path, reason`."""
    candidates, skipped = [], []
    for item in map(Path, inputs):
        if not item.is_dir():
            candidates.append(item)
            continue
        files = [path for path in sorted(item.rglob("*")) if path.is_file()
                 and not any(part.startswith(".") for part in path.relative_to(item).parts)]
        images = [path for path in files if path.suffix.lower() in IMAGE_EXTENSIONS]
        candidates += images
        skipped += [(str(path), "not an image") for path in files if path.suffix.lower() not in IMAGE_EXTENSIONS]
        if not images:
            skipped.append((str(item), f"folder holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"))
    first_of = {}
    for path in candidates:
        first_of.setdefault(path.resolve(), path)
    unique = list(first_of.values())
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        facts = list(pool.map(read_image_facts, unique))
    skipped += [(str(path), fact["reason"]) for path, fact in zip(unique, facts) if "reason" in fact]
    readable = [str(path) for path, fact in zip(unique, facts) if "reason" not in fact]
    return readable, pd.DataFrame(skipped, columns=["path", "reason"])


def gradcam_paths(paths: list[str], out_dir: Path) -> list[Path]:
    """`<stem>_gradcam.png` in out_dir per image; `-2`, `-3`... when names collide or would replace an input."""
    inputs, chosen = {Path(path).resolve() for path in paths}, []
    for path in paths:
        stem, number = Path(path).stem, 1
        target = out_dir / f"{stem}_gradcam.png"
        while target.resolve() in inputs or target in chosen:
            number += 1
            target = out_dir / f"{stem}_gradcam-{number}.png"
        chosen.append(target)
    return chosen


def write_atomically(path: Path, write) -> None:
    """`write(partial_path)`, then rename into place: a kill never leaves half a file under `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def write_png(pixels: np.ndarray, path: Path) -> None:
    """Save RGB pixels in [0, 1] as a PNG atomically."""
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))
    write_atomically(path, lambda partial: image.save(partial, format="PNG"))


def predict_files(model_path: Path, paths: list[str], threshold: float, gradcam_dir=None,
                  batch_size: int = 32) -> pd.DataFrame:
    """Probabilities and labels of readable image files, in batches; Grad-CAM overlays into gradcam_dir if given."""
    from cxrlib.data.pipeline import make_dataset  # TensorFlow is imported only once there is work to do
    from cxrlib.explain import GradCam, overlay_heatmap
    from cxrlib.models import load_model

    try:
        model = load_model(model_path)
    except (OSError, TypeError, ValueError) as error:  # Keras' errors for damaged or foreign files
        raise PredictError(f"{model_path} cannot be loaded ({error}); {TRAIN_HINT}") from error
    batches = make_dataset(pd.DataFrame({"path": paths, "target": 0}), model.input_shape[1], batch_size, cache=None)
    try:
        cam = None if gradcam_dir is None else GradCam(model)
    except ValueError as error:
        raise PredictError(f"Grad-CAM cannot explain {model_path}: {error}; run without --gradcam") from error
    overlays = [] if cam is None else gradcam_paths(paths, Path(gradcam_dir))
    probabilities, next_overlay = [], iter(overlays)
    for images, _ in batches:
        probabilities.append(np.ravel(model.predict_on_batch(images)))
        if cam is not None:
            for image, heatmap in zip(images.numpy(), cam(images)[0]):
                write_png(overlay_heatmap(image, heatmap), next(next_overlay))
    probabilities = np.concatenate(probabilities).astype(float)
    labels = np.asarray(CLASS_NAMES)[predict_labels(probabilities, threshold)]
    result = pd.DataFrame({"path": paths, "probability": probabilities, "label": labels, "threshold": threshold})
    if cam is not None:
        result["gradcam"] = [str(path) for path in overlays]
    return result


def checked_threshold(value: float) -> float:
    """A threshold in [0, 1], else an error naming the value."""
    if not 0.0 <= float(value) <= 1.0:
        raise PredictError(f"threshold {value} is outside [0, 1]; give a probability, e.g. 0.5")
    return float(value)


def prepare(run_dir, inputs, threshold: float | None) -> tuple[Path, float, list[str], pd.DataFrame]:
    """The run's model file and threshold (or the given one), the readable images and the skipped inputs."""
    model_path = model_file(run_dir)
    threshold = run_threshold(run_dir) if threshold is None else checked_threshold(threshold)
    return model_path, threshold, *collect_images(inputs)


def require_images(paths: list[str], inputs) -> None:
    """Stop when no input holds a readable image."""
    if not paths:
        raise PredictError(f"none of the inputs {[str(item) for item in inputs]} holds a readable image; pass image "
                           f"files or folders of them ({', '.join(sorted(IMAGE_EXTENSIONS))})")


def predict(run_dir, inputs, gradcam_dir=None, threshold: float | None = None, batch_size: int = 32) -> pd.DataFrame:
    """Columns path, probability (of PNEUMONIA), label, threshold (+ gradcam) for image files and folders.

    The threshold is the run's validation-chosen one unless given. Unreadable files are skipped with one
    warning naming each and its reason; PredictError when the run is unusable or no image is readable.
    """
    model_path, threshold, paths, skipped = prepare(run_dir, inputs, threshold)
    if len(skipped):
        warnings.warn("skipped: " + "; ".join(f"{row.path} ({row.reason})" for row in skipped.itertuples()),
                      stacklevel=2)
    require_images(paths, inputs)
    return predict_files(model_path, paths, threshold, gradcam_dir, batch_size)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib.predict", description=__doc__.split("\n")[0],
                                     epilog="Exit status: 0 all predicted, 2 some inputs skipped (listed on stderr), "
                                            "1 nothing predicted or the run directory is unusable.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help=f"a run directory holding {MODEL_FILE} and {RUN_RECORD_FILE}")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files and folders (searched recursively)")
    parser.add_argument("--out", type=Path, metavar="CSV", help="write the predictions CSV here (default: print it)")
    parser.add_argument("--gradcam", type=Path, metavar="DIR",
                        help="write one Grad-CAM overlay PNG per image into this folder")
    parser.add_argument("--threshold", type=float, metavar="X",
                        help="decision threshold (default: the run's, chosen on validation)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default: 32)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parse_args(argv)
    try:
        model_path, threshold, paths, skipped = prepare(args.run_dir, args.inputs, args.threshold)
        for row in skipped.itertuples():
            print(f"cxrlib.predict: skipped {row.path}: {row.reason}", file=sys.stderr)
        require_images(paths, args.inputs)
        frame = predict_files(model_path, paths, threshold, args.gradcam, args.batch_size)
    except PredictError as error:
        print(f"cxrlib.predict: error: {error}", file=sys.stderr)
        return EXIT_NOTHING_PREDICTED
    if args.out:
        write_atomically(args.out, lambda partial: frame.to_csv(partial, index=False))
    else:
        frame.to_csv(sys.stdout, index=False)
    print(f"cxrlib.predict: {len(frame)} image(s) predicted, {len(skipped)} input(s) skipped"
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    return EXIT_SOME_SKIPPED if len(skipped) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
