"""Predict new chest X-rays with a trained run: its score, the label at the run's threshold, a calibrated
probability, an out-of-distribution flag and Grad-CAM overlays at each image's own resolution.

    python -m cxrlib.predict RUN_DIR IMAGE_OR_FOLDER... [--out CSV] [--gradcam DIR] [--threshold X] [--batch-size N]

Folders are searched recursively for image files (``cxrlib.data.index.IMAGE_EXTENSIONS``; hidden files are
ignored). A bad input (missing, zero-byte, corrupt, truncated, not an image) is reported on stderr with the
data layer's reason and skipped. A run trained before the OOD detector and the calibration existed gets empty
columns for them and one line saying how to add them. Exit status: 0 every image was predicted, 2 some inputs
were skipped, 1 nothing could be predicted (or the run directory cannot be used).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.calibration import calibrated_probability
from cxrlib.contract import CLASS_NAMES, MODEL_FILE, OOD_FILE, RUN_RECORD_FILE
from cxrlib.data.index import IMAGE_EXTENSIONS, read_image_facts
from cxrlib.evaluate import predict_labels
from cxrlib.files import write_atomic
from cxrlib.ood.detector import MahalanobisDetector, OodFileError, load_detector, refit_hint
from cxrlib.quiet import tensorflow_quietly

# score: the model's output; probability: P(PNEUMONIA) calibrated on validation, at probability_prevalence;
# ood_score: the largest Mahalanobis distance to the training images' features over the detector's layers, each
# standardised on the validation images; ood_flag: above ood_threshold.
COLUMNS = ("path", "score", "label", "threshold", "probability", "probability_prevalence", "ood_score",
           "ood_threshold", "ood_flag")
CALIBRATION_KEYS = ("slope", "intercept", "prevalence")
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


def read_run_record(run_dir: str | os.PathLike, threshold_given: bool) -> dict:
    """The run's run.json content; {} when it is missing but a threshold was given (nothing else needs it)."""
    record_path = Path(run_dir) / RUN_RECORD_FILE
    fix = f"{TRAIN_HINT} (the threshold is set when training finishes), or give a threshold (--threshold X)"
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        if threshold_given:
            return {}
        raise PredictError(f"{record_path} is missing; {fix}") from None
    except json.JSONDecodeError as error:
        raise PredictError(f"{record_path} is not a run record ({error}); {fix}") from None
    if not isinstance(record, dict) or not isinstance(record.get("threshold", {}), dict):
        raise PredictError(f"{record_path} is not a run record (no `threshold` mapping); {fix}")
    return record


def run_threshold(record: dict, run_dir: str | os.PathLike) -> float:
    """The decision threshold the run chose on its validation split (run.json `threshold.value`)."""
    value = record.get("threshold", {}).get("value")
    if value is None:
        raise PredictError(f"{Path(run_dir) / RUN_RECORD_FILE} holds no threshold value; {TRAIN_HINT} (the threshold is "
                           "set when training finishes), or give a threshold (--threshold X)")
    return float(value)


def run_detector(run_dir: Path, record: dict) -> MahalanobisDetector | None:
    """The run's OOD detector (ood.npz); None for a run trained without one."""
    path = run_dir / OOD_FILE
    if not path.exists():
        if "ood" not in record:
            return None
        raise PredictError(f"{path} is missing although {RUN_RECORD_FILE} records an OOD model; copy it from where "
                           f"the run was trained, or {refit_hint(path)}")
    try:
        return load_detector(path)
    except OodFileError as error:
        raise PredictError(str(error)) from None


def run_calibration(run_dir: Path, record: dict) -> dict | None:
    """The run's Platt calibration (run.json `calibration`); None for a run trained without one."""
    calibration = record.get("calibration")
    if calibration is None:
        return None
    if not isinstance(calibration, dict) or not all(isinstance(calibration.get(key), (int, float))
                                                    for key in CALIBRATION_KEYS):
        raise PredictError(f"{run_dir / RUN_RECORD_FILE} holds calibration {calibration!r}, which lacks numbers "
                           f"{', '.join(CALIBRATION_KEYS)}; {refit_hint(run_dir / OOD_FILE)}")
    return calibration


@dataclass(frozen=True)
class RunParts:
    """What predicting with a run needs, read and checked before TensorFlow starts."""

    run_dir: Path
    model_path: Path
    threshold: float
    detector: MahalanobisDetector | None  # None: the run was trained before OOD detectors existed
    calibration: dict | None  # None: the run was trained before calibration existed

    def missing_notice(self) -> str | None:
        """One line naming what the run lacks, which columns stay empty and the command that adds them."""
        columns = {"OOD model": ("ood_score", "ood_threshold", "ood_flag"),
                   "calibration": ("probability", "probability_prevalence")}
        missing = [what for what, part in (("OOD model", self.detector), ("calibration", self.calibration))
                   if part is None]
        if not missing:
            return None
        empty = [column for what in missing for column in columns[what]]
        return (f"{self.run_dir} has no {' and no '.join(missing)} (trained before cxrlib fitted them), so "
                f"{', '.join(empty)} are empty; add them with: python -m cxrlib.ood fit {self.run_dir}")


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


def write_png(pixels: np.ndarray, path: Path) -> None:
    """Save RGB pixels in [0, 1] as a PNG atomically."""
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))
    write_atomic(path, lambda partial: image.save(partial, format="PNG"))


def scoring_model(model, parts: RunParts):
    """`model` giving the pooled features of the OOD detector's layers, then the score (`model` without a detector)."""
    from cxrlib.ood.layers import MissingLayerError, scoring_model as ood_scoring_model

    if parts.detector is None:
        return model
    ood_path, model_path = parts.run_dir / OOD_FILE, parts.model_path
    try:
        scorer = ood_scoring_model(model, parts.detector.layers)
    except MissingLayerError as error:
        raise PredictError(f"{ood_path} was fitted on layers {list(parts.detector.layers)}, which {model_path} "
                           f"cannot give ({error}); {refit_hint(ood_path)}") from None
    given = {layer: output.shape[-1] for layer, output in zip(parts.detector.layers, scorer.outputs)}
    if given != parts.detector.dims:
        raise PredictError(f"{ood_path} expects features per layer {parts.detector.dims}, {model_path} gives "
                           f"{given}; {refit_hint(ood_path)}")
    return scorer


def result_frame(paths: list[str], scores: np.ndarray, ood_scores: np.ndarray | None, parts: RunParts) -> pd.DataFrame:
    """The COLUMNS of predicted images; the calibration's and the detector's columns empty when the run lacks them."""
    calibration, detector = parts.calibration, parts.detector
    return pd.DataFrame({
        "path": paths, "score": scores,
        "label": np.asarray(CLASS_NAMES)[predict_labels(scores, parts.threshold)], "threshold": parts.threshold,
        "probability": calibrated_probability(scores, calibration) if calibration else np.nan,
        "probability_prevalence": calibration["prevalence"] if calibration else np.nan,
        "ood_score": np.nan if detector is None else ood_scores,
        "ood_threshold": np.nan if detector is None else detector.threshold,
        "ood_flag": pd.array([pd.NA] * len(paths) if detector is None else detector.flags(ood_scores), dtype="boolean"),
    }, columns=list(COLUMNS))


def predict_files(parts: RunParts, paths: list[str], gradcam_dir=None, batch_size: int = 32) -> pd.DataFrame:
    """COLUMNS of readable image files, in batches; heatmap overlays (the reports' method, for the class each image is
    called) at each image's size into gradcam_dir if given."""
    from cxrlib.data.pipeline import make_dataset  # TensorFlow is imported only once there is work to do
    from cxrlib.explain import chosen_classes, explainer
    from cxrlib.models import load_model
    from cxrlib.plots.gradcam import source_overlay

    try:
        model = load_model(parts.model_path)
    except (OSError, TypeError, ValueError) as error:  # Keras' errors for damaged or foreign files
        raise PredictError(f"{parts.model_path} cannot be loaded ({error}); {TRAIN_HINT}") from error
    scorer = scoring_model(model, parts)
    batches = make_dataset(pd.DataFrame({"path": paths, "target": 0}), model.input_shape[1], batch_size, cache=None)
    try:
        cam = None if gradcam_dir is None else explainer(model)  # the reports' method: HiResCAM, the chosen class
    except ValueError as error:
        raise PredictError(f"Grad-CAM cannot explain {parts.model_path}: {error}; run without --gradcam") from error
    overlays = [] if cam is None else gradcam_paths(paths, Path(gradcam_dir))
    scores, ood_scores, next_path, next_overlay = [], [], iter(paths), iter(overlays)
    for images, _ in batches:
        outputs = scorer.predict_on_batch(images)
        if parts.detector is not None:
            ood_scores.append(parts.detector.scores(dict(zip(parts.detector.layers, outputs))))
            outputs = outputs[-1]
        scores.append(np.ravel(outputs))
        if cam is not None:
            for heatmap in cam(images, for_class=chosen_classes(scores[-1], parts.threshold))[0]:
                write_png(source_overlay(next(next_path), heatmap), next(next_overlay))
    result = result_frame(paths, np.concatenate(scores).astype(float),
                          np.concatenate(ood_scores) if ood_scores else None, parts)
    if cam is not None:
        result["gradcam"] = [str(path) for path in overlays]
    return result


def checked_threshold(value: float) -> float:
    """A threshold in [0, 1], else an error naming the value."""
    if not 0.0 <= float(value) <= 1.0:
        raise PredictError(f"threshold {value} is outside [0, 1]; give a score threshold, e.g. 0.5")
    return float(value)


def read_run(run_dir, threshold: float | None) -> RunParts:
    """The run's model file, threshold (or the given one), OOD detector and calibration, checked."""
    model_path = model_file(run_dir)
    record = read_run_record(run_dir, threshold_given=threshold is not None)
    threshold = run_threshold(record, run_dir) if threshold is None else checked_threshold(threshold)
    return RunParts(Path(run_dir), model_path, threshold, run_detector(Path(run_dir), record),
                    run_calibration(Path(run_dir), record))


def require_images(paths: list[str], inputs) -> None:
    """Stop when no input holds a readable image."""
    if not paths:
        raise PredictError(f"none of the inputs {[str(item) for item in inputs]} holds a readable image; pass image "
                           f"files or folders of them ({', '.join(sorted(IMAGE_EXTENSIONS))})")


def predict(run_dir, inputs, gradcam_dir=None, threshold: float | None = None, batch_size: int = 32) -> pd.DataFrame:
    """COLUMNS (+ gradcam) for image files and folders: score, label, calibrated probability, OOD score and flag.

    The threshold is the run's validation-chosen one unless given. Unreadable files are skipped with one
    warning naming each and its reason; a run without OOD model or calibration gets one warning saying how to
    add them; PredictError when the run is unusable or no image is readable.
    """
    parts = read_run(run_dir, threshold)
    paths, skipped = collect_images(inputs)
    if len(skipped):
        warnings.warn("skipped: " + "; ".join(f"{row.path} ({row.reason})" for row in skipped.itertuples()),
                      stacklevel=2)
    if parts.missing_notice():
        warnings.warn(parts.missing_notice(), stacklevel=2)
    require_images(paths, inputs)
    return predict_files(parts, paths, gradcam_dir, batch_size)


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
                        help="decision threshold on the score (default: the run's, chosen on validation)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default: 32)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parse_args(argv)
    try:
        parts = read_run(args.run_dir, args.threshold)
        paths, skipped = collect_images(args.inputs)
        for row in skipped.itertuples():
            print(f"cxrlib.predict: skipped {row.path}: {row.reason}", file=sys.stderr)
        require_images(paths, args.inputs)
        if parts.missing_notice():
            print(f"cxrlib.predict: {parts.missing_notice()}", file=sys.stderr)
        with tensorflow_quietly():
            frame = predict_files(parts, paths, args.gradcam, args.batch_size)
    except PredictError as error:
        print(f"cxrlib.predict: error: {error}", file=sys.stderr)
        return EXIT_NOTHING_PREDICTED
    if args.out:
        write_atomic(args.out, lambda partial: frame.to_csv(partial, index=False))
    else:
        frame.to_csv(sys.stdout, index=False)
    flagged = f", {int(frame['ood_flag'].sum())} flagged out of distribution" if parts.detector else ""
    print(f"cxrlib.predict: {len(frame)} image(s) predicted{flagged}, {len(skipped)} input(s) skipped"
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    return EXIT_SOME_SKIPPED if len(skipped) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
