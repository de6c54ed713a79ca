"""Heatmaps drawn over the X-rays: blended overlays (also at the stored size), the figure of models side by side with
its colour bar, file names, chest box and warnings, and the share of mass outside the box."""
import matplotlib

matplotlib.use("Agg")

from types import SimpleNamespace

import numpy as np
from PIL import Image

from cxrlib.explain import ModelHeatmaps
from cxrlib.plots import RIGHT, WRONG, overlay_heatmap, plot_gradcam, source_overlay
from cxrlib.plots.gradcam import COLOUR_BAR, plot_outside_shares


def test_figure_has_the_xray_and_one_overlay_per_model_titled_right_or_wrong(tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    heatmaps = np.tile(np.linspace(0, 1, 16), (3, 16, 1))
    maps = {"a": ModelHeatmaps(images, heatmaps, np.array([0.9, 0.2, 0.6])),
            "b": ModelHeatmaps(images, heatmaps, np.array([0.1, 0.3, 0.7]))}
    figure = plot_gradcam(maps, labels=["PNEUMONIA", "NORMAL", 0], thresholds={"a": 0.5},
                          save_to=tmp_path / "gradcam.png")
    assert len(figure.axes) == 10 and (tmp_path / "gradcam.png").exists()  # 9 panels and the colour bar
    titles = [ax.get_title() for ax in figure.axes[:9]]
    assert titles == ["true PNEUMONIA", "a: score 0.90\nPNEUMONIA: right", "b: score 0.10", "true NORMAL",
                      "a: score 0.20\nNORMAL: right", "b: score 0.30", "true NORMAL", "a: score 0.60\nPNEUMONIA: WRONG",
                      "b: score 0.70"]  # the verdict in words, not colour alone; only "a" has a threshold
    colors = [figure.axes[i].title.get_color() for i in (1, 4, 7, 2)]
    assert colors == [RIGHT, RIGHT, WRONG, "black"]
    assert "warm colours = strongest" in figure._suptitle.get_text()
    assert figure.axes[9].get_ylabel() == COLOUR_BAR and figure.axes[9].get_ylim() == (0, 1)


def test_every_panel_names_its_file_and_class_and_a_map_mostly_outside_the_box_is_warned():
    images = np.full((2, 12, 12, 3), 100, np.float32)
    cells = np.zeros((2, 3, 3))
    cells[0, 0, 0], cells[1, 1, 1] = 1.0, 1.0  # a corner map, a centre map
    box = SimpleNamespace(top=0.25, bottom=0.75, left=0.25, right=0.75)
    maps = {"m": ModelHeatmaps(images, np.repeat(np.repeat(cells, 4, 1), 4, 2), np.array([0.8, 0.3]), cells,
                               np.array([1, 0]), np.array([1.0, 0.0]), "HiResCAM at x")}
    figure = plot_gradcam(maps, ["PNEUMONIA", "NORMAL"], {"m": 0.5}, names=["/d/test/x/corner.jpeg", "centre.png"],
                          box=box, warn_above=0.5, warning="evidence outside the lungs")
    titles = [ax.get_title() for ax in figure.axes[:4]]
    assert [title.split("\n")[0] for title in titles] == ["corner.jpeg", "corner.jpeg", "centre.png", "centre.png"]
    assert titles[1].endswith("map for PNEUMONIA\n⚠ 100% outside the box:\nevidence outside the lungs")
    assert titles[3].endswith("map for NORMAL\n0% outside the box") and "⚠" not in titles[3]
    outline = figure.axes[1].patches[0]
    assert outline.get_xy() == (2.5, 2.5) and outline.get_width() == 6 and outline.get_linestyle() == "--"


def test_the_outside_share_figure_counts_the_warned_maps_per_model():
    figure = plot_outside_shares({"a": np.array([0.1, 0.6, 0.9, np.nan]), "b": np.array([0.2, 0.3])}, 0.5, 0.44)
    assert [ax.get_title() for ax in figure.axes] == ["a: 67% of 3 maps warned", "b: 0% of 2 maps warned"]
    assert [line.get_xdata()[0] for line in figure.axes[0].lines] == [0.5, 0.44]


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
