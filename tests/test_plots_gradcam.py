"""Grad-CAM drawn over the X-rays: blended overlays (also at the stored size) and the figure of models side by side."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
from PIL import Image

from cxrlib.explain import ModelHeatmaps
from cxrlib.plots import RIGHT, WRONG, overlay_heatmap, plot_gradcam, source_overlay


def test_figure_has_the_xray_and_one_overlay_per_model_titled_right_or_wrong(tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    heatmaps = np.tile(np.linspace(0, 1, 16), (3, 16, 1))
    maps = {"a": ModelHeatmaps(images, heatmaps, np.array([0.9, 0.2, 0.6])),
            "b": ModelHeatmaps(images, heatmaps, np.array([0.1, 0.3, 0.7]))}
    figure = plot_gradcam(maps, labels=["PNEUMONIA", "NORMAL", 0], thresholds={"a": 0.5},
                          save_to=tmp_path / "gradcam.png")
    assert len(figure.axes) == 9 and (tmp_path / "gradcam.png").exists()
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["true PNEUMONIA", "a: score 0.90\nPNEUMONIA: right", "b: score 0.10", "true NORMAL",
                      "a: score 0.20\nNORMAL: right", "b: score 0.30", "true NORMAL", "a: score 0.60\nPNEUMONIA: WRONG",
                      "b: score 0.70"]  # the verdict in words, not colour alone; only "a" has a threshold
    colors = [figure.axes[i].title.get_color() for i in (1, 4, 7, 2)]
    assert colors == [RIGHT, RIGHT, WRONG, "black"]
    assert "warm colours = strongest" in figure._suptitle.get_text()


def test_overlay_is_rgb_in_unit_range():
    overlay = overlay_heatmap(np.full((8, 8, 3), 200, np.uint8), np.linspace(0, 1, 64).reshape(8, 8))
    assert overlay.shape == (8, 8, 3) and 0 <= overlay.min() and overlay.max() <= 1


def test_source_overlay_has_the_stored_size_and_stretches_the_square_map_over_it(tmp_path):
    Image.fromarray(np.full((50, 120), 100, np.uint8)).save(tmp_path / "wide.png")  # 120 wide, 50 high
    heatmap = np.zeros((8, 8))
    heatmap[:4, :4] = 1.0  # hot in the top-left quarter of the model's square input
    overlay = source_overlay(tmp_path / "wide.png", heatmap)
    assert overlay.shape == (50, 120, 3) and 0 <= overlay.min() and overlay.max() <= 1
    hot = overlay[..., 0] > overlay[..., 2]  # jet: red where the map is high, blue where it is low
    assert hot[:20, :50].all() and not hot[30:, :].any() and not hot[:, 70:].any()
