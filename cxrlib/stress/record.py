"""A trained model and its OOD detector on every test image under every declared shift: the run's ``stress.csv``
(``contract.STRESS_COLUMNS``: shift, strength, path relative to the data root, prob, ood_score, ood_flag).

Images are decoded once by the project's pipeline (``cxrlib.data.pipeline.make_dataset``, cached in memory) and
each shift is applied to the decoded batches (``apply.shift_batch``); score and OOD features come from one pass.
"""
from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrlib import models
from cxrlib.contract import MODEL_FILE, OOD_FILE, PREDICTIONS_FILE, STRESS_COLUMNS, STRESS_FILE, STRESS_SHIFTS_FILE
from cxrlib.data.index import relpath_from_path
from cxrlib.data.pipeline import make_dataset
from cxrlib.files import write_atomic
from cxrlib.ood.detector import MahalanobisDetector, OodFileError, load_detector
from cxrlib.ood.layers import scoring_model

from .apply import shift_batch
from .shifts import REFERENCE, Declaration, StressError, load_declaration

# The reference condition against predictions.csv: the same run's model on the same images, any CPU kind.
PROBABILITY_TOLERANCE = 1e-3
FLOAT_FORMAT = "%.6g"  # keeps the record small; only a score within 5e-7 of the threshold could round across it


def stress_record(model: keras.Model, detector: MahalanobisDetector, rows: pd.DataFrame, declaration: Declaration,
                  batch_size: int = 32) -> pd.DataFrame:
    """STRESS_COLUMNS for every row (``path``: an image file, ``target``) under the reference and each declared
    shift, in the declaration's order, rows in the frame's order."""
    scorer = scoring_model(model, detector.layers)
    decoded = make_dataset(rows[["path", "target"]], model.input_shape[1], batch_size, cache="memory")
    relpaths = [relpath_from_path(path) for path in rows["path"]]
    parts = []
    with tqdm(total=len(rows) * len(declaration.conditions), desc="stress test", unit="img") as progress:
        for shift in declaration.conditions:
            probs, ood_scores, offset = [], [], 0
            for images, _ in decoded:
                seeds = np.stack([np.full(len(images), declaration.seed), offset + np.arange(len(images))], axis=1)
                outputs = scorer.predict_on_batch(shift_batch(images, shift, seeds))
                ood_scores.append(detector.scores(dict(zip(detector.layers, outputs[:-1]))))
                probs.append(np.ravel(outputs[-1]))
                offset += len(images)
                progress.update(len(images))
            ood = np.concatenate(ood_scores)
            parts.append(pd.DataFrame({"shift": shift.kind, "strength": shift.strength, "path": relpaths,
                                       "prob": np.concatenate(probs).astype(float), "ood_score": ood,
                                       "ood_flag": detector.flags(ood)}, columns=list(STRESS_COLUMNS)))
    return pd.concat(parts, ignore_index=True)


def write_stress_record(record: pd.DataFrame, directory: str | os.PathLike) -> Path:
    """Write ``stress.csv`` into ``directory`` atomically."""
    return write_atomic(Path(directory) / STRESS_FILE,
                        lambda partial: record.to_csv(partial, index=False, float_format=FLOAT_FORMAT))


def check_reference(scores: pd.Series, predictions: pd.DataFrame, model_path: Path, subset: str = "test") -> None:
    """Error unless ``scores`` (unshifted, by path relative to the data root) are the run's own probabilities of
    ``subset`` in predictions.csv."""
    recorded = predictions[predictions["subset"] == subset].set_index("path")["prob"]
    recorded.index = recorded.index.map(relpath_from_path)  # records before 2026-12-06 held absolute paths
    difference = float(np.max(np.abs(scores.reindex(recorded.index).to_numpy() - recorded.to_numpy()), initial=0.0))
    if not difference <= PROBABILITY_TOLERANCE:
        raise StressError(f"{model_path} does not reproduce the {subset} probabilities of "
                          f"{model_path.parent / PREDICTIONS_FILE} (largest difference {difference:.3g} > "
                          f"{PROBABILITY_TOLERANCE}); pass the run directory whose model wrote them, and the data "
                          "set it was trained on (--data-dir)")


def run_rows(run_dir: Path, data_root: Path, subset: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's predictions.csv and its ``subset`` rows with ``path`` joined to ``data_root``, every file present."""
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        raise StressError(f"{path} is missing; pass a finished run directory (runs/<profile>/<arch>/seed-<k>/)")
    predictions = pd.read_csv(path)
    if not {"path", "subset", "target", "prob"} <= set(predictions.columns) or not (predictions["subset"] == subset).any():
        raise StressError(f"{path} holds no {subset} rows with path, target and prob; pass a run that predicted its "
                          f"{subset} images (a search trial never predicts test)")
    rows = predictions[predictions["subset"] == subset].assign(path=lambda frame: [
        str(data_root / relpath_from_path(relpath)) for relpath in frame["path"]])
    missing = [path for path in rows["path"] if not Path(path).is_file()]
    if missing:
        raise StressError(f"{len(missing)} {subset} images of {path} are not in {data_root} (e.g. {missing[0]}); pass "
                          "the data set the run was trained on with --data-dir")
    return predictions, rows.reset_index(drop=True)


def model_file(run_dir: Path) -> Path:
    """The run's model.keras, or an error saying that the stress test needs it."""
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise StressError(f"{model_path} is missing; the stress test needs the run's model file (runs/ keeps it; "
                          "reports/ holds records only): train the run again with ./run_all.sh")
    return model_path


def record_run(run_dir: str | os.PathLike, data_root: str | os.PathLike,
               shifts_file: str | os.PathLike = STRESS_SHIFTS_FILE, batch_size: int = 32,
               out_dir: str | os.PathLike | None = None) -> Path:
    """Write the stress record of a finished run that still has its model file into ``out_dir`` (default: the run
    directory), after checking that the unshifted scores reproduce its predictions.csv; returns the file."""
    run_dir = Path(run_dir)
    model_path = model_file(run_dir)
    declaration = load_declaration(shifts_file)
    predictions, rows = run_rows(run_dir, Path(data_root))
    try:
        detector = load_detector(run_dir / OOD_FILE)
    except OodFileError as error:
        raise StressError(str(error)) from None
    record = stress_record(models.load_model(model_path), detector, rows, declaration, batch_size)
    check_reference(record[record["shift"] == REFERENCE].set_index("path")["prob"], predictions, model_path)
    return write_stress_record(record, out_dir or run_dir)
