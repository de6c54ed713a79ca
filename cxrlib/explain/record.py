"""Heatmaps as a run record (``gradcam.csv`` beside ``predictions.csv``): every test image's signed map at the feature
map's size, a few hundred kilobytes of text, so that a report can show the heatmaps of a committed replicate when its
model files (never in git) are gone.

Two formats are read. The current one (``CURRENT_COLUMNS``, written by ``python -m cxrlib.explain``) names its
``method`` and ``layer`` and holds the signed map (``explain.gradcam``: positive for PNEUMONIA, negative for NORMAL),
divided by its largest absolute value (``scale``), so either class's map can be drawn: the reports draw the class the
model chose. The format before issue 35 (``OLD_COLUMNS``: no method column) holds Grad-CAM at the backbone's last
layer for PNEUMONIA only, each map divided by its maximum; it is read as ``OLD_METHOD`` and its maps stay PNEUMONIA's
(an image the model calls NORMAL mostly has an empty map there). Nearest upsampling of a recorded map gives the heatmap
the reports draw from a model (to the record's 4 decimals).
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

from cxrlib.contract import GRADCAM_FILE, PREDICTIONS_FILE
from cxrlib.data.pipeline import load_image
from cxrlib.files import write_atomic

from .gradcam import ModelHeatmaps, chosen_classes, class_maps, explainer, method_words, upsample
from .region import outside_shares

CURRENT_COLUMNS = ("path", "prob", "method", "layer", "height", "width", "scale", "evidence")  # evidence: row-major
OLD_COLUMNS = ("path", "prob", "height", "width", "heatmap")  # the format before issue 35
GRADCAM_COLUMNS = CURRENT_COLUMNS
OLD_METHOD = "Grad-CAM at the last layer, PNEUMONIA only"  # how an old-format record's method is named
PROBABILITY_TOLERANCE = 1e-3  # the model's probability against predictions.csv: the same run, any CPU kind


class GradcamRecordError(ValueError):
    """A gradcam.csv (or the model meant to write one) does not fit its run; the message names the file and fix."""


def _values_text(values: np.ndarray) -> str:
    return " ".join(f"{value:.4f}" for value in np.ravel(values))


def gradcam_record(model: keras.Model, predictions: pd.DataFrame, data_root: str | Path, subset: str = "test",
                   batch_size: int = 32) -> pd.DataFrame:
    """One row per ``subset`` image of a run's predictions (paths relative to ``data_root``): the model's PNEUMONIA
    probability and its signed map (``explainer``) at the feature map's size."""
    paths = list(predictions.loc[predictions["subset"] == subset, "path"])
    gradcam, size, rows = explainer(model), model.input_shape[1], []
    for start in range(0, len(paths), batch_size):
        batch_paths = paths[start:start + batch_size]
        images = np.stack([load_image(Path(data_root) / path, size) for path in batch_paths]).astype("float32")
        signed, probs = gradcam.evidence(images)
        scales = np.abs(signed).max(axis=(1, 2))
        rows += [{"path": path, "prob": float(prob), "method": method_words(gradcam), "layer": gradcam.layer_path[-1],
                  "height": cam.shape[0], "width": cam.shape[1], "scale": float(scale),
                  "evidence": _values_text(cam / scale if scale > 0 else cam)}
                 for path, cam, prob, scale in zip(batch_paths, signed, probs, scales)]
    return pd.DataFrame(rows, columns=CURRENT_COLUMNS)


def check_against_predictions(record: pd.DataFrame, predictions: pd.DataFrame, model_file: str | Path,
                              records_dir: str | Path) -> None:
    """Error unless the record's probabilities are the run's own (predictions.csv), so the record is of that run."""
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


def _as_current(record: pd.DataFrame) -> pd.DataFrame:
    """An old-format record in the current columns, its method named ``OLD_METHOD``."""
    return record.rename(columns={"heatmap": "evidence"}).assign(method=OLD_METHOD, layer="last spatial layer",
                                                                   scale=1.0)[list(CURRENT_COLUMNS)]


def read_gradcam_record(records_dir: str | Path) -> pd.DataFrame | None:
    """A run's ``gradcam.csv`` in the current columns (an old-format one labelled ``OLD_METHOD``), checked; None when
    the run has none."""
    path = Path(records_dir) / GRADCAM_FILE
    if not path.is_file():
        return None
    record = pd.read_csv(path, dtype={"path": str, "heatmap": str, "evidence": str})  # a 1×1 map is not a number
    columns = OLD_COLUMNS if "method" not in record.columns else CURRENT_COLUMNS
    missing = [column for column in columns if column not in record.columns]
    if missing:
        raise GradcamRecordError(f"{path} lacks columns {missing}; write it again with python -m cxrlib.explain")
    record = _as_current(record) if columns is OLD_COLUMNS else record
    sizes = record["height"] * record["width"]
    counts = record["evidence"].fillna("").str.split().map(len)
    if not counts.eq(sizes).all():
        row = int(np.argmax(~counts.eq(sizes).to_numpy()))
        raise GradcamRecordError(f"{path}, row {row + 2} ({record['path'].iloc[row]}): {counts.iloc[row]} heatmap "
                                 f"values for a {record['height'].iloc[row]}×{record['width'].iloc[row]} map; write "
                                 "it again with python -m cxrlib.explain")
    return record


def is_old(record: pd.DataFrame) -> bool:
    """Whether a record holds the method before issue 35 (PNEUMONIA only, last layer)."""
    return bool((record["method"] == OLD_METHOD).any())


def record_cells(record: pd.DataFrame) -> np.ndarray:
    """[N, h, w]: a record's maps as recorded (signed and scaled to [-1, 1]; an old record's PNEUMONIA maps)."""
    return np.stack([np.array(values.split(), dtype="float32").reshape(height, width)
                     for values, height, width in zip(record["evidence"], record["height"], record["width"])])


def shown_classes(record: pd.DataFrame, threshold: float) -> np.ndarray:
    """[N]: the class each recorded map is drawn for: the one the model chose at ``threshold`` (an old record:
    PNEUMONIA, the only one it holds)."""
    return np.ones(len(record), dtype=int) if is_old(record) else chosen_classes(record["prob"], threshold)


def shown_cells(record: pd.DataFrame, threshold: float) -> np.ndarray:
    """[N, h, w] in [0, 1]: each recorded map as the reports draw it (``shown_classes``'s part, divided by its
    maximum)."""
    cells = record_cells(record)
    return cells if is_old(record) else class_maps(cells, shown_classes(record, threshold))


def record_heatmaps(record: pd.DataFrame, images: np.ndarray, threshold: float) -> ModelHeatmaps:
    """``ModelHeatmaps`` of a record's rows (``images`` in the same order) as ``shown_cells`` draws them."""
    cells = shown_cells(record, threshold)
    return ModelHeatmaps(images, upsample(cells, images.shape[1:3], "nearest"), record["prob"].to_numpy("float32"),
                         cells, shown_classes(record, threshold), outside_shares(cells), record["method"].iloc[0])


def maps_from_record(record: pd.DataFrame, relpaths: list[str], data_root: str | Path, image_size: int,
                     threshold: float = 0.5) -> ModelHeatmaps:
    """The ``ModelHeatmaps`` of recorded images (paths relative to ``data_root``), as ``gradcam_maps`` gives them
    with the model: images at ``image_size``, the chosen class's recorded maps, recorded probabilities."""
    rows = record.drop_duplicates("path").set_index("path")
    absent = [path for path in relpaths if path not in rows.index]
    if absent:
        raise GradcamRecordError(f"the Grad-CAM record has no row for {absent[:3]}; write it again with "
                                 "python -m cxrlib.explain for the run's test images")
    images = np.stack([load_image(Path(data_root) / path, image_size) for path in relpaths]).astype("float32")
    return record_heatmaps(rows.loc[relpaths].reset_index(), images, threshold)
