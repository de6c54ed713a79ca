"""The black frame of decoded images (float [B, S, S, 3] or grey [B, S, S, ...], grey levels 0..255): which pixels
are black, the outer band, and the box inside the frame of black edge rows and columns. NumPy only: the border check
(``border``) and the acquisition check (``acquisition``) share it.

The outer band is notebook 1's (``data.summary.BLACK_BORDER`` of each side); a pixel is black at or below
``BLACK_LEVEL`` at the model's input size, where resizing has smoothed the stored zeros.
"""
from __future__ import annotations

import numpy as np

from cxrlib.data.summary import BLACK_BORDER

BLACK_LEVEL = 8  # grey level (0..255) at or below which a resized pixel counts as black
FRAME_LINE_SHARE = 0.9  # an edge row or column belongs to the frame when at least this share of it is black


def outer_band(size: int, border: float = BLACK_BORDER) -> np.ndarray:
    """[size, size] True within ``border`` of each side."""
    width = max(1, round(border * size))
    inner = np.zeros((size, size), bool)
    inner[width:size - width, width:size - width] = True
    return ~inner


def black_pixels(images: np.ndarray) -> np.ndarray:
    """[B, S, S] True where a grey image's pixel is black."""
    return images[..., 0] <= BLACK_LEVEL


def edge_run(lines: np.ndarray) -> np.ndarray:
    """[B] how many leading True values each row of ``lines`` [B, S] has."""
    return np.cumprod(lines, axis=1).sum(axis=1)


def frame_boxes(images: np.ndarray) -> np.ndarray:
    """[B, 4] boxes (top, left, bottom, right, 0..1) inside each image's frame of black edge rows and columns; the
    whole image when the frame would leave less than half of either side."""
    black = black_pixels(images)
    rows, columns = black.mean(axis=2) >= FRAME_LINE_SHARE, black.mean(axis=1) >= FRAME_LINE_SHARE
    top, bottom = edge_run(rows), edge_run(rows[:, ::-1])
    left, right = edge_run(columns), edge_run(columns[:, ::-1])
    last = images.shape[1] - 1
    boxes = np.stack([top, left, last - bottom, last - right], axis=1) / last
    too_much = (top + bottom > images.shape[1] / 2) | (left + right > images.shape[2] / 2)
    boxes[too_much] = [0.0, 0.0, 1.0, 1.0]
    return boxes.astype(np.float32)
