"""Does a run's decision depend on the black frame? Its validation images scored as decoded, with the black pixels
of their outer band masked (set to the median grey level of the centre the band encloses), and with the frame of
black edge rows and columns cropped away (the inside stretched back to the square). Validation images only: nothing
here looks at a test image.

The outer band is notebook 1's (``data.summary.BLACK_BORDER`` of each side); a pixel is black at or below
``BLACK_LEVEL`` at the model's input size, where resizing has smoothed the stored zeros.
"""
from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from cxrlib import models
from cxrlib.contract import BORDER_FILE
from cxrlib.data.index import relpath_from_path
from cxrlib.data.pipeline import make_dataset
from cxrlib.files import write_atomic

from .frame import BLACK_LEVEL, FRAME_LINE_SHARE, black_pixels, edge_run, frame_boxes, outer_band  # noqa: F401
from .record import FLOAT_FORMAT, check_reference, model_file, run_rows

BORDER_COLUMNS = ("path", "target", "black_in_band", "framed", "prob", "prob_masked", "prob_cropped")


def mask_band(images: np.ndarray) -> np.ndarray:
    """The images with the black pixels of their outer band set to the median grey level of the centre it encloses."""
    band = outer_band(images.shape[1])
    fill = np.median(images[:, ~band, 0], axis=1)[:, None, None, None]
    return np.where((black_pixels(images) & band)[..., None], fill, images).astype(np.float32)


def crop_frame(images: np.ndarray) -> np.ndarray:
    """The inside of each image's frame stretched back to the square (bilinear); frameless images unchanged."""
    size = images.shape[1:3]
    return tf.image.crop_and_resize(images, frame_boxes(images), tf.range(len(images)), size).numpy()


def border_record(model: keras.Model, rows: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
    """BORDER_COLUMNS per row (``path``: an image file, ``target``): its black share in the outer band, whether it
    has a frame, and the model's score as decoded, band-masked and frame-cropped."""
    parts = []
    band = outer_band(model.input_shape[1])
    for images, _ in make_dataset(rows[["path", "target"]], model.input_shape[1], batch_size, cache=None):
        images = images.numpy()
        boxes = frame_boxes(images)
        parts.append(pd.DataFrame({
            "black_in_band": (black_pixels(images) & band).sum(axis=(1, 2)) / band.sum(),
            "framed": (boxes != [0.0, 0.0, 1.0, 1.0]).any(axis=1),
            **{column: np.ravel(model.predict_on_batch(version)) for column, version in
               (("prob", images), ("prob_masked", mask_band(images)), ("prob_cropped", crop_frame(images)))}}))
    scores = pd.concat(parts, ignore_index=True)
    return pd.concat([pd.DataFrame({"path": [relpath_from_path(path) for path in rows["path"]],
                                    "target": rows["target"].to_numpy()}), scores], axis=1)[list(BORDER_COLUMNS)]


def border_check_run(run_dir: str | os.PathLike, data_root: str | os.PathLike, batch_size: int = 32,
                     out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``border.csv`` of a finished run's validation images into ``out_dir`` (default: the run directory),
    after checking that the unmasked scores reproduce its predictions.csv; returns the file."""
    run_dir = Path(run_dir)
    model_path = model_file(run_dir)
    predictions, rows = run_rows(run_dir, Path(data_root), subset="val")
    record = border_record(models.load_model(model_path), rows, batch_size)
    check_reference(record.set_index("path")["prob"], predictions, model_path, subset="val")
    return write_atomic(Path(out_dir or run_dir) / BORDER_FILE,
                        lambda partial: record.to_csv(partial, index=False, float_format=FLOAT_FORMAT))
