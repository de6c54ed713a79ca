"""A model-independent acquisition check: per decoded image a handful of acquisition statistics (grey levels, black
frame, sharpness, noise, a rough lung-field width), a reference fitted on training images, and a flag at a declared
false-flag rate; and its record (``acquisition.csv``), the share flagged per shift and strength. NumPy and pandas
only: decoding and shifting the images is ``acquisition_check``'s job.

The flag, declared before anything was measured on shifted images (issue 36): each statistic is standardised with
the reference images' mean and SD, an image's score is its Mahalanobis distance to the reference mean under the
Ledoit-Wolf shrunk covariance of the standardised statistics, and the threshold is the reference images' (1 - rate)
quantile of that distance (rate 1%, as the OOD flag's). Why one distance rather than per-statistic intervals with a
Bonferroni rate: a shift moves several statistics together (darker exposure lowers the mean, the percentiles and the
SD at once) in directions the training images do not co-vary in, which one covariance-aware distance sees and ten
separate intervals, each as wide as the most extreme training image, would not; the empirical quantile makes the
rate hold without assuming the statistics are Gaussian. The per-statistic median standardised values in the record
say which statistic a shift moved.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf

from cxrlib.contract import OOD_FLAG_RATE

from .frame import black_pixels, frame_boxes, outer_band

RECORD_FILE = "acquisition.csv"  # the committed measurement: reports/stress-cpu/acquisition.csv
FLAG_RATE = OOD_FLAG_RATE  # the declared share of reference-like images flagged, as the model-feature OOD flag's
MIN_REFERENCE_IMAGES = 50  # fewer leave the (1 - rate) quantile and a 10 x 10 covariance to a handful of images
LOG_FLOOR = 1e-3  # added before taking logs, so a flat image (SD or Laplacian 0) has a finite statistic
# statistic -> what it measures (the record's z_<statistic> columns, in this order)
STATISTICS = {
    "mean": "mean grey level",
    "sd": "log of the grey-level SD",
    "p02": "2nd percentile of the grey levels",
    "p50": "median grey level",
    "p98": "98th percentile of the grey levels",
    "black_band": "share of the outer band, 10% of each side, that is black",
    "frame": "share of the image outside the box of black edge rows and columns",
    "sharpness": "log variance of the 4-neighbour Laplacian",
    "noise": "log noise SD estimated from the median absolute Laplacian",
    "dark_columns": "share of the inner columns darker than halfway between the darkest and brightest column of the "
                    "central rows, a rough lung-field width",
}
RECORD_COLUMNS = ("subset", "shift", "strength", "images", "flagged", "flagged_normal", "flagged_pneumonia", "rate",
                  "threshold", "reference_images", "image_size", "split_seed", "cpu",
                  *(f"z_{name}" for name in STATISTICS))
RECORD_HINT = "write it again with python -m cxrlib.stress.acquisition_check RECORDS_DIR --out FILE"


class AcquisitionError(ValueError):
    """The acquisition check cannot use its input (images, statistics, record); the message says what and the fix."""


def grey(images) -> np.ndarray:
    """[B, S, S] float64 grey levels of decoded images ([B, S, S, 3] with equal channels, or [B, S, S]), checked."""
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 4 and array.shape[-1] in (1, 3):
        array = array[..., 0]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] != array.shape[2] or array.shape[1] < 8:
        raise AcquisitionError(f"images of shape {np.shape(images)} are not a non-empty batch of square decoded "
                               "images [B, S, S, 3] (S >= 8); pass batches of cxrlib.data.pipeline.make_dataset")
    if not np.all(np.isfinite(array)):
        raise AcquisitionError("images hold NaN or infinite grey levels; pass decoded grey levels 0..255")
    if array.min() < 0 or array.max() > 255:
        raise AcquisitionError(f"images hold grey levels from {array.min():g} to {array.max():g}; pass decoded grey "
                               "levels 0..255 (clip shifted images first)")
    return array


def laplacian(levels: np.ndarray) -> np.ndarray:
    """[B, S-2, S-2] 4-neighbour Laplacian of grey images [B, S, S]."""
    centre = levels[:, 1:-1, 1:-1]
    return (levels[:, :-2, 1:-1] + levels[:, 2:, 1:-1] + levels[:, 1:-1, :-2] + levels[:, 1:-1, 2:]) - 4 * centre


def dark_column_share(levels: np.ndarray) -> np.ndarray:
    """[B] share of the columns inside the outer band whose mean over the central half of the rows is below halfway
    between the darkest and the brightest such column (0 for a flat image)."""
    size = levels.shape[1]
    inner = ~outer_band(size)[size // 2]  # the columns inside the band, read off the middle row
    profile = levels[:, size // 4:size - size // 4, :].mean(axis=1)[:, inner]
    low, high = profile.min(axis=1, keepdims=True), profile.max(axis=1, keepdims=True)
    return np.where(high[:, 0] > low[:, 0], (profile < (low + high) / 2).mean(axis=1), 0.0)


def image_statistics(images) -> pd.DataFrame:
    """One row of STATISTICS per decoded image (float [B, S, S, 3], grey levels 0..255)."""
    levels = grey(images)
    flat = levels.reshape(len(levels), -1)
    p02, p50, p98 = np.percentile(flat, [2, 50, 98], axis=1)
    band, black = outer_band(levels.shape[1]), black_pixels(levels[..., None])
    top, left, bottom, right = frame_boxes(levels[..., None]).astype(np.float64).T
    edges = laplacian(levels).reshape(len(levels), -1)
    noise_sd = 1.4826 * np.median(np.abs(edges), axis=1) / np.sqrt(20.0)  # Laplacian of white noise: SD sqrt(20) sigma
    return pd.DataFrame({
        "mean": flat.mean(axis=1), "sd": np.log(flat.std(axis=1) + LOG_FLOOR), "p02": p02, "p50": p50, "p98": p98,
        "black_band": (black & band).sum(axis=(1, 2)) / band.sum(),
        "frame": 1.0 - (bottom - top) * (right - left),
        "sharpness": np.log(edges.var(axis=1) + LOG_FLOOR), "noise": np.log(noise_sd + LOG_FLOOR),
        "dark_columns": dark_column_share(levels)}, columns=list(STATISTICS))


def statistics_array(statistics: pd.DataFrame) -> np.ndarray:
    """[N, len(STATISTICS)] float64 of a frame with every statistic, or AcquisitionError."""
    missing = [name for name in STATISTICS if name not in getattr(statistics, "columns", ())]
    if missing:
        raise AcquisitionError(f"the statistics lack {missing}; compute them with image_statistics")
    values = statistics[list(STATISTICS)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise AcquisitionError("the statistics hold NaN or infinite values; compute them with image_statistics")
    return values


@dataclass(frozen=True)
class AcquisitionReference:
    """The reference images' statistics (mean, SD, shrunk precision of the standardised values) and the flag
    threshold on the Mahalanobis distance; about ``rate`` of reference-like images lie beyond it."""

    mean: np.ndarray  # [K]
    sd: np.ndarray  # [K]
    precision: np.ndarray  # [K, K]
    threshold: float
    rate: float
    images: int  # reference images it was fitted on

    def standardised(self, statistics: pd.DataFrame) -> np.ndarray:
        """[N, K] statistics minus the reference mean, in reference SDs."""
        return (statistics_array(statistics) - self.mean) / self.sd

    def distances(self, statistics: pd.DataFrame) -> np.ndarray:
        """[N] Mahalanobis distance of each image's statistics to the reference mean."""
        z = self.standardised(statistics)
        return np.sqrt(np.maximum(np.sum(z @ self.precision * z, axis=1), 0.0))

    def flags(self, statistics: pd.DataFrame) -> np.ndarray:
        """[N] True where an image's distance lies above the threshold."""
        return self.distances(statistics) > self.threshold


def fit_reference(statistics: pd.DataFrame, rate: float = FLAG_RATE) -> AcquisitionReference:
    """The reference of ``statistics`` (image_statistics of the training images), threshold at their (1 - rate)
    distance quantile."""
    values = statistics_array(statistics)
    if not 0 < rate < 1:
        raise AcquisitionError(f"flag rate {rate} is outside (0, 1); declare a share such as {FLAG_RATE}")
    if len(values) < MIN_REFERENCE_IMAGES:
        raise AcquisitionError(f"{len(values)} reference images are too few (at least {MIN_REFERENCE_IMAGES}); fit on "
                               "the training images of a split")
    mean, sd = values.mean(axis=0), values.std(axis=0)
    if np.any(sd <= 0):
        flat = [name for name, spread in zip(STATISTICS, sd) if spread <= 0]
        raise AcquisitionError(f"statistic(s) {flat} do not vary over the {len(values)} reference images; fit on more, "
                               "and more varied, images")
    precision = LedoitWolf(assume_centered=True).fit((values - mean) / sd).precision_
    unthresholded = AcquisitionReference(mean, sd, precision, np.inf, rate, len(values))
    threshold = float(np.quantile(unthresholded.distances(statistics), 1 - rate))
    return AcquisitionReference(mean, sd, precision, threshold, rate, len(values))


def condition_row(reference: AcquisitionReference, statistics: pd.DataFrame, targets) -> dict:
    """One record row's measured part: images, share flagged (all, NORMAL, PNEUMONIA) and each statistic's median
    standardised value."""
    targets = np.asarray(targets, dtype=int)
    if len(targets) != len(statistics):
        raise AcquisitionError(f"{len(targets)} targets for {len(statistics)} images; pass one target per image")
    flagged = reference.flags(statistics)
    medians = np.median(reference.standardised(statistics), axis=0)

    def share(mask):
        return float(flagged[mask].mean()) if mask.any() else float("nan")

    return {"images": len(targets), "flagged": share(np.ones(len(targets), bool)), "flagged_normal": share(targets == 0),
            "flagged_pneumonia": share(targets == 1), "rate": reference.rate, "threshold": reference.threshold,
            "reference_images": reference.images, **{f"z_{name}": value for name, value in zip(STATISTICS, medians)}}


def read_acquisition_record(path: str | os.PathLike) -> pd.DataFrame:
    """An ``acquisition.csv``, checked: every column, one unshifted validation row, shares within 0..1."""
    path = Path(path)
    if not path.is_file():
        raise AcquisitionError(f"{path} does not exist; {RECORD_HINT}")
    record = pd.read_csv(path, dtype={"subset": str, "shift": str, "cpu": str})
    missing = [column for column in RECORD_COLUMNS if column not in record.columns]
    if missing:
        raise AcquisitionError(f"{path} lacks columns {missing}; {RECORD_HINT}")
    if ((record["subset"] == "val") & (record["shift"] == "none")).sum() != 1:
        raise AcquisitionError(f"{path} needs exactly one unshifted validation row (subset val, shift none); "
                               f"{RECORD_HINT}")
    shares = record[["flagged", "flagged_normal", "flagged_pneumonia"]].to_numpy(dtype=float)
    if np.any((shares < 0) | (shares > 1)):
        raise AcquisitionError(f"{path} holds flagged shares outside 0..1; {RECORD_HINT}")
    return record
