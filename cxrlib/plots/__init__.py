"""Every figure of the study, in one style. Each function returns a matplotlib Figure and can save a PNG.

Figures are created with ``matplotlib.figure.Figure`` (not pyplot), so nothing leaks or shows twice in
notebooks: a figure displays when it is the cell's last expression (or via ``display(fig)``).
Runs are ``cxrlib.compare.Run`` objects (anything with ``name``, ``arch``, ``threshold``, ``val``, ``test``).

One module per job; callers use the names re-exported here (``plots.plot_roc_curves``, ``plots.styled``, ...):

- ``style``: the shared look (``styled``, ``new_figure``, ``finish``), fixed colours and run labels;
- ``training``: training curves from history.csv, one run's or every replicate's (learning curves);
- ``evaluation``: confusion matrices, ROC, precision-recall, calibration (also the score's Platt calibration on
  validation) and metrics vs threshold;
- ``images``: image grids with predictions, confident errors, stored samples, captioned galleries and
  pixel-intensity histograms;
- ``data``: data-exploration figures (class counts, images per patient, image sizes, label rate by group,
  where images are black);
- ``search``: a hyperparameter search's history, parameter importances and quality against CPU time;
- ``study``: a study's replicates, paired, with the interval of their differences.
- ``gradcam``: Grad-CAM heatmaps (``cxrlib.explain``) over the X-rays, one column per model.
- ``calibration``: reliability curves across replicates, with the band from the lowest to the highest replicate;
- ``subgroups``: each replicate's share of a subgroup classified correctly, per model.
"""
from .calibration import plot_reliability_band
from .data import (plot_black_pixel_maps, plot_class_counts, plot_image_sizes, plot_images_per_patient,
                   plot_label_rate_by_group)
from .evaluation import (plot_calibration, plot_confusion_matrices, plot_pr_curves, plot_roc_curves,
                         plot_score_calibration, plot_threshold_metrics)
from .gradcam import COLOUR_BAR, overlay_heatmap, plot_gradcam, plot_outside_shares, source_overlay
from .images import (display_image, plot_confident_errors, plot_image_gallery, plot_intensity_histograms,
                     plot_sample_images, plot_sample_predictions, read_stored_image)
from .search import (objective_limit, outlier_label, outliers, plot_importances, plot_quality_vs_cost,
                     plot_search_history)
from .study import plot_factorial, plot_seed_pairs, seed_labels
from .style import (CLASS_COLORS, KNOWN_MODELS, PALETTE, RIGHT, SAVE_DPI, STYLE, WRONG, finish, label, model_color,
                    new_figure, styled)
from .subgroups import plot_subgroup_shares
from .training import HISTORY_METRICS, HISTORY_SUBSETS, LEARNING_CURVES, plot_history, plot_learning_curves

__all__ = [
    "CLASS_COLORS", "COLOUR_BAR", "HISTORY_METRICS", "HISTORY_SUBSETS", "KNOWN_MODELS", "LEARNING_CURVES", "PALETTE",
    "RIGHT", "SAVE_DPI", "STYLE", "WRONG", "display_image", "finish", "label", "model_color", "new_figure",
    "objective_limit", "outlier_label", "outliers", "overlay_heatmap", "plot_black_pixel_maps", "plot_calibration",
    "plot_class_counts", "plot_confident_errors", "plot_confusion_matrices", "plot_factorial", "plot_gradcam",
    "plot_history", "plot_image_gallery", "plot_image_sizes", "plot_images_per_patient", "plot_importances",
    "plot_intensity_histograms", "plot_label_rate_by_group", "plot_learning_curves", "plot_outside_shares",
    "plot_pr_curves", "plot_quality_vs_cost", "plot_reliability_band", "plot_roc_curves", "plot_sample_images",
    "plot_sample_predictions", "plot_score_calibration", "plot_search_history", "plot_seed_pairs",
    "plot_subgroup_shares", "plot_threshold_metrics", "read_stored_image", "seed_labels", "source_overlay", "styled",
]
