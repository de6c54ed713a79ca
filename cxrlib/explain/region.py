"""The central chest region a heatmap is judged against, declared once, here, before any map was measured.

The box is in fractions of the model's square input (the stored image squashed to a square, as
``cxrlib.data.load_image`` does), so it is the same at every input size. It was drawn on the mean of 200 validation
images at 96 px and on 17 of them one by one (validation images only, no test image and no heatmap): in that square
the lungs, the mediastinum and the heart lie between 10% and 85% of the height (lung apices to the diaphragm's domes)
and between 12.5% and 87.5% of the width. Outside it are the neck, the shoulders and arms, the abdomen below the
diaphragm, the labels and the black border. A map spread evenly over the image would put ``UNIFORM_OUTSIDE`` (44%)
of its mass outside; a map with more than ``OUTSIDE_WARNING`` (half) of its mass outside carries the page's warning,
``WARNING``. Evidence inside the box is not shown to be lung evidence: the box also holds the heart and the spine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A rectangle in fractions of the square input: rows ``top``..``bottom``, columns ``left``..``right``."""

    top: float
    bottom: float
    left: float
    right: float

    @property
    def area(self) -> float:
        """The share of the image the box covers."""
        return (self.bottom - self.top) * (self.right - self.left)


CHEST_BOX = Box(top=0.10, bottom=0.85, left=0.125, right=0.875)
UNIFORM_OUTSIDE = 1 - CHEST_BOX.area  # 0.4375: an evenly spread map's share outside
OUTSIDE_WARNING = 0.5  # more than half of a map's mass outside the box: the warning
WARNING = "evidence outside the lungs"


def _overlap(start: np.ndarray, stop: np.ndarray, low: float, high: float) -> np.ndarray:
    """Length of each interval [start, stop) inside [low, high]."""
    return np.clip(np.minimum(stop, high) - np.maximum(start, low), 0, None)


def inside_fractions(height: int, width: int, box: Box = CHEST_BOX) -> np.ndarray:
    """[height, width]: the share of each cell of a height×width map that lies inside ``box``."""
    rows, cols = np.arange(height), np.arange(width)
    row_part = _overlap(rows / height, (rows + 1) / height, box.top, box.bottom) * height
    col_part = _overlap(cols / width, (cols + 1) / width, box.left, box.right) * width
    return np.outer(row_part, col_part)


def outside_shares(cells: np.ndarray, box: Box = CHEST_BOX) -> np.ndarray:
    """[N]: the share of each non-negative map's mass (cells [N, h, w], one value per cell area) outside ``box``;
    NaN for a map that is all zero."""
    cells = np.asarray(cells, dtype="float64")
    inside = inside_fractions(*cells.shape[1:], box)
    total = cells.sum(axis=(1, 2))
    outside = (cells * (1 - inside)).sum(axis=(1, 2))
    return np.clip(np.divide(outside, total, out=np.full_like(total, np.nan), where=total > 0), 0, 1)


def warned(outside: np.ndarray) -> np.ndarray:
    """[N] bool: the maps that carry ``WARNING`` (more than ``OUTSIDE_WARNING`` of their mass outside the box)."""
    return np.nan_to_num(np.asarray(outside, dtype="float64"), nan=0.0) > OUTSIDE_WARNING
