"""Grad-CAM as a run record (``gradcam.csv`` beside ``predictions.csv``): every test image's heatmap at the feature
map's size (3×3 for ResNet-50 at 96 px, 4×4 for DenseNet-121 at 128 px), a few dozen kilobytes of text, so that a
report can show Grad-CAM of a committed replicate when its model files (never in git) are gone.

Bilinear upsampling of the recorded map gives the heatmap Grad-CAM computes live (to the record's 4 decimals).
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

from cxrlib.contract import GRADCAM_FILE, PREDICTIONS_FILE
from cxrlib.data.pipeline import load_image
from cxrlib.files import write_atomic

from .gradcam import GradCam, ModelHeatmaps, upsample

GRADCAM_COLUMNS = ("path", "prob", "height", "width", "heatmap")  # heatmap: row-major values, space-separated
PROBABILITY_TOLERANCE = 1e-3  # the model's probability against predictions.csv: the same run, any CPU kind


class GradcamRecordError(ValueError):
    """A gradcam.csv (or the model meant to write one) does not fit its run; the message names the file and fix."""


def gradcam_record(model: keras.Model, predictions: pd.DataFrame, data_root: str | Path, subset: str = "test",
                   batch_size: int = 32) -> pd.DataFrame:
    """One row per ``subset`` image of a run's predictions (paths relative to ``data_root``): the model's PNEUMONIA
    probability and its Grad-CAM heatmap at the feature map's size."""
    paths = list(predictions.loc[predictions["subset"] == subset, "path"])
    gradcam, size, rows = GradCam(model), model.input_shape[1], []
    for start in range(0, len(paths), batch_size):
        batch_paths = paths[start:start + batch_size]
        images = np.stack([load_image(Path(data_root) / path, size) for path in batch_paths]).astype("float32")
        cams, probs = gradcam.coarse(images)
        rows += [{"path": path, "prob": float(prob), "height": cam.shape[0], "width": cam.shape[1],
                  "heatmap": " ".join(f"{value:.4f}" for value in cam.ravel())}
                 for path, cam, prob in zip(batch_paths, cams, probs)]
    return pd.DataFrame(rows, columns=GRADCAM_COLUMNS)


def check_against_predictions(record: pd.DataFrame, predictions: pd.DataFrame, model_file: str | Path,
                              records_dir: str | Path) -> None:
    """Error unless the model's probabilities are the run's own (predictions.csv), so the record is of that run."""
    recorded = predictions.drop_duplicates("path").set_index("path")["prob"].reindex(record["path"]).to_numpy()
    difference = (np.inf if np.isnan(recorded).any()
                  else float(np.max(np.abs(recorded - record["prob"].to_numpy()), initial=0.0)))
    if not difference <= PROBABILITY_TOLERANCE:
        raise GradcamRecordError(
            f"{model_file} does not reproduce {Path(records_dir) / PREDICTIONS_FILE} (largest probability difference "
            f"{difference:.3g} > {PROBABILITY_TOLERANCE}); pass the model file of the run these records describe")


def write_gradcam_record(record: pd.DataFrame, records_dir: str | Path) -> Path:
    """Write ``gradcam.csv`` into a run's records folder (atomically)."""
    return write_atomic(Path(records_dir) / GRADCAM_FILE, lambda partial: record.to_csv(partial, index=False))


def read_gradcam_record(records_dir: str | Path) -> pd.DataFrame | None:
    """A run's ``gradcam.csv``, checked; None when the run has none."""
    path = Path(records_dir) / GRADCAM_FILE
    if not path.is_file():
        return None
    record = pd.read_csv(path, dtype={"path": str, "heatmap": str})  # a 1×1 map would read as a number
    missing = [column for column in GRADCAM_COLUMNS if column not in record.columns]
    if missing:
        raise GradcamRecordError(f"{path} lacks columns {missing}; write it again with python -m cxrlib.explain")
    sizes = record["height"] * record["width"]
    counts = record["heatmap"].fillna("").str.split().map(len)
    if not counts.eq(sizes).all():
        row = int(np.argmax(~counts.eq(sizes).to_numpy()))
        raise GradcamRecordError(f"{path}, row {row + 2} ({record['path'].iloc[row]}): {counts.iloc[row]} heatmap "
                                 f"values for a {record['height'].iloc[row]}×{record['width'].iloc[row]} map; write "
                                 "it again with python -m cxrlib.explain")
    return record


def maps_from_record(record: pd.DataFrame, relpaths: list[str], data_root: str | Path,
                     image_size: int) -> ModelHeatmaps:
    """The ``ModelHeatmaps`` of recorded images (paths relative to ``data_root``), as ``gradcam_maps`` would give them
    with the model: images at ``image_size``, recorded heatmaps upsampled to it, recorded probabilities."""
    rows = record.drop_duplicates("path").set_index("path")
    absent = [path for path in relpaths if path not in rows.index]
    if absent:
        raise GradcamRecordError(f"the Grad-CAM record has no row for {absent[:3]}; write it again with "
                                 "python -m cxrlib.explain for the run's test images")
    chosen = rows.loc[relpaths]
    cams = np.stack([np.array(values.split(), dtype="float32").reshape(height, width)
                     for values, height, width in zip(chosen["heatmap"], chosen["height"], chosen["width"])])
    images = np.stack([load_image(Path(data_root) / path, image_size) for path in relpaths]).astype("float32")
    return ModelHeatmaps(images, upsample(cams, images.shape[1:3]), chosen["prob"].to_numpy(dtype="float32"))
