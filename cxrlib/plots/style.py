"""The figures' shared look: style context, figure creation and saving, fixed colours and run labels."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import matplotlib
import seaborn as sns
from matplotlib.figure import Figure

from cxrlib.backbones import title_of
from cxrlib.contract import ARCHS, CLASS_NAMES, ENSEMBLE

SAVE_DPI = 220  # twice the pixels of the size pages show a saved figure at (their <img srcset="... 2x">)
STYLE = {"figure.dpi": 90, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.titleweight": "bold"}
PALETTE = sns.color_palette("colorblind")
KNOWN_MODELS = (*ARCHS, ENSEMBLE)  # each registered architecture keeps its colour in every figure
RIGHT, WRONG = "#0072b2", "#d55e00"  # Okabe-Ito blue and vermillion: told apart with any colour vision
CLASS_COLORS = dict(zip(CLASS_NAMES, (PALETTE[0], PALETTE[3])))


def styled(plot: Callable) -> Callable:
    """Draw inside the study's seaborn/matplotlib style without changing the caller's global settings."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with sns.axes_style("whitegrid"), matplotlib.rc_context(STYLE):
            return plot(*args, **kwargs)
    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (4.5, 4.0), **kwargs):
    """A constrained-layout Figure with a grid of axes; ``size`` is per panel (width, height) in inches."""
    figure = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False, **kwargs)
    return figure, axes


def finish(figure: Figure, save_to: str | Path | None = None) -> Figure:
    """Save ``figure`` as PNG when ``save_to`` is given (creating folders); return it."""
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(save_to, dpi=SAVE_DPI, bbox_inches="tight")
    return figure


def model_color(run_or_name, index: int = 0):
    """A fixed colour per architecture (resnet50, densenet121, ensemble) so every figure agrees."""
    name = getattr(run_or_name, "arch", run_or_name)
    if name in KNOWN_MODELS:
        return PALETTE[KNOWN_MODELS.index(name)]
    return PALETTE[(len(KNOWN_MODELS) + index) % len(PALETTE)]


def label(run) -> str:
    """How a figure names a run: the architecture's title, with the seed when the run records one."""
    seed = getattr(run, "seed", None)
    return title_of(run.name) + (f", seed {seed}" if seed is not None else "")
