"""Every plot returns a Figure with the expected panels and labels, and saves a PNG (Agg backend)."""
import ast
import importlib
import inspect
import pkgutil

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cxrlib import compare, data, plots


def make_run(arch: str, separation: float, seed: int) -> compare.Run:
    """An in-memory run with val and test predictions (no files needed for plotting)."""
    rng = np.random.default_rng(seed)
    frames = []
    for subset, count in (("val", 40), ("test", 60)):
        targets = (np.arange(count) % 5 < 3).astype(int)
        probs = 1 / (1 + np.exp(-rng.normal(separation * (targets - 0.5), 1.0)))
        labels = np.where(targets == 1, "PNEUMONIA", "NORMAL")
        frames.append(pd.DataFrame({"path": [f"/fake/{subset}/{i}.jpeg" for i in range(count)], "subset": subset,
                                    "label": labels, "target": targets, "patient_id": "p", "prob": probs}))
    history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.6, 0.4, 0.3], "accuracy": [0.7, 0.8, 0.85],
                            "auc": [0.75, 0.85, 0.9], "val_loss": [0.5, 0.45, 0.5],
                            "val_accuracy": [0.72, 0.8, 0.78], "val_auc": [0.8, 0.88, 0.86]})
    return compare.Run(name=arch, arch=arch, info={}, predictions=pd.concat(frames, ignore_index=True),
                       threshold=0.55, history=history, threshold_info={"policy": "youden"})


@pytest.fixture
def runs():
    return [make_run("resnet50", 2.0, 0), make_run("densenet121", 1.5, 1)]


def fake_loader(path, image_size):
    """Stands in for cxrlib.data.load_image: uint8 [S, S, 3] pixels."""
    return np.full((image_size, image_size, 3), len(str(path)) * 7 % 255, dtype=np.uint8)


def test_history_marks_the_best_validation_auc_epoch(runs, tmp_path):
    figure = plots.plot_history(runs[0].history, save_to=tmp_path / "history.png")
    assert isinstance(figure, Figure) and (tmp_path / "history.png").stat().st_size > 0
    assert [ax.get_title() for ax in figure.axes] == ["Loss", "Accuracy", "AUC"]
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["train", "validation", "best epoch (2)"]  # history.csv's epoch 1, as Keras prints it
    assert list(figure.axes[0].lines[0].get_xdata()) == [1, 2, 3]


def test_history_without_known_columns_is_rejected():
    with pytest.raises(ValueError, match="history.csv"):
        plots.plot_history(pd.DataFrame({"epoch": [1], "foo": [1.0]}))


def test_confusion_matrices_show_counts_and_row_normalised(runs):
    figure = plots.plot_confusion_matrices(runs)
    assert len(figure.axes) == 4
    assert figure.axes[0].get_title().startswith("ResNet-50: counts")
    assert figure.axes[1].get_title().startswith("ResNet-50: row-normalised")
    cell_texts = [float(text.get_text()) for text in figure.axes[0].texts]
    assert sum(cell_texts) == len(runs[0].test)


def test_roc_curves_put_auc_in_the_legend_and_mark_operating_points(runs, tmp_path):
    figure = plots.plot_roc_curves(runs, save_to=tmp_path / "roc.png")
    ax = figure.axes[0]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(label.startswith("ResNet-50 (AUC 0.") for label in legend)
    assert "DenseNet-121 @ 0.55" in legend
    assert ax.get_xlabel().startswith("1 - specificity") and (tmp_path / "roc.png").exists()


def test_pr_curves_show_average_precision_and_prevalence(runs):
    ax = plots.plot_pr_curves(runs).axes[0]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(label.startswith("DenseNet-121 (AP ") for label in legend)
    assert "prevalence (0.60)" in legend


def test_score_calibration_shows_the_score_and_the_calibrated_probability_on_validation(runs, tmp_path):
    from cxrlib.calibration import fit_platt

    run = runs[0]
    run.info["calibration"] = fit_platt(run.val["target"], run.val["prob"])
    figure = plots.plot_score_calibration(run, save_to=tmp_path / "calibration.png")
    curves, histogram = figure.axes
    legend = [text.get_text() for text in curves.get_legend().get_texts()]
    assert legend[0].startswith("score (before) (ECE ") and legend[1].startswith("calibrated probability (after)")
    assert legend[3] == "validation prevalence (0.60)" and "(validation)" in curves.get_title()
    assert len(histogram.patches) == 2 and (tmp_path / "calibration.png").stat().st_size > 0
    with pytest.raises(ValueError, match="python -m cxrlib.ood fit"):
        plots.plot_score_calibration(runs[1])


def test_calibration_has_reliability_and_histogram_panels(runs):
    figure = plots.plot_calibration(runs)
    assert len(figure.axes) == 2
    assert figure.axes[0].get_ylabel() == "observed PNEUMONIA rate"
    assert any("ECE" in text.get_text() for text in figure.axes[0].get_legend().get_texts())


def test_threshold_metrics_mark_the_chosen_threshold(runs):
    ax = plots.plot_threshold_metrics(runs[0]).axes[0]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "chosen threshold (0.550)" in legend and "sensitivity" in legend
    assert "(val)" in ax.get_title()


def test_sample_grid_colours_titles_by_correctness(runs, tmp_path):
    figure = plots.plot_sample_predictions(runs[0], n=6, image_size=16, loader=fake_loader, ncols=3,
                                           save_to=tmp_path / "grid.png")
    titled = [ax for ax in figure.axes if ax.get_title()]
    assert len(titled) == 6 and (tmp_path / "grid.png").exists()
    for ax in titled:
        predicted, truth = ax.get_title().removeprefix("pred ").split(" (")[0], ax.get_title().split("true ")[1]
        expected = plots.RIGHT if predicted == truth else plots.WRONG
        assert matplotlib.colors.to_hex(ax.title.get_color()) == expected
    assert {ax.get_title().split("true ")[1] for ax in titled} == {"NORMAL", "PNEUMONIA"}


def test_confident_errors_are_all_red_and_sorted_by_confidence(runs):
    figure = plots.plot_confident_errors(runs[1], n=4, image_size=16, loader=fake_loader)
    titled = [ax for ax in figure.axes if ax.get_title()]
    assert len(titled) == 4
    assert all(matplotlib.colors.to_hex(ax.title.get_color()) == plots.WRONG for ax in titled)
    probs = [float(ax.get_title().split("(")[1].split(")")[0]) for ax in titled]
    distances = np.abs(np.array(probs) - runs[1].threshold)
    assert (np.diff(distances) <= 0.01).all()


@pytest.fixture
def tree_images(image_tree) -> pd.DataFrame:
    """Index rows of the generated tree: 12/2/4 images per class in train/val/test, two per patient, 44x40 px."""
    return data.scan_dataset(image_tree).images


def bar_heights(ax) -> list[int]:
    return [int(patch.get_height()) for patch in ax.patches if patch.get_height() > 0]


def test_class_counts_label_every_bar_with_its_count(tree_images, tmp_path):
    figure = plots.plot_class_counts(data.subset_counts(tree_images), save_to=tmp_path / "counts.png")
    ax = figure.axes[0]
    assert ax.get_title() == "Images per split and class" and (tmp_path / "counts.png").stat().st_size > 0
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["train", "val", "test"]
    assert sorted(int(text.get_text()) for text in ax.texts) == [2, 2, 4, 4, 12, 12]
    frame = data.assign_subsets(tree_images, val_fraction=0.5, seed=0)
    assert plots.plot_class_counts(data.subset_counts(frame)).axes[0].get_title() == "Images per subset and class"


def test_images_per_patient_histogram_counts_patients_of_one_split(tree_images):
    ax = plots.plot_images_per_patient(tree_images, split="test").axes[0]
    assert ax.get_title() == "Kaggle test folder: images per patient" and ax.get_yscale() == "log"
    assert bar_heights(ax) == [2, 2]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["NORMAL", "PNEUMONIA"]


def test_image_sizes_plot_one_dot_per_distinct_size_coloured_by_its_count(tree_images, tmp_path):
    sizes = tree_images.assign(width=44, height=40)
    sizes.loc[sizes.index[:3], ["width", "height"]] = [50, 60]  # 3 NORMAL images at a rare size
    figure = plots.plot_image_sizes(sizes, save_to=tmp_path / "sizes.png")
    normal, pneumonia = figure.axes[:2]
    assert [ax.get_title() for ax in (normal, pneumonia)] == ["NORMAL (18 images)", "PNEUMONIA (18 images)"]
    dots = normal.collections[0]
    assert sorted(map(tuple, dots.get_offsets().tolist())) == [(44.0, 40.0), (50.0, 60.0)]
    assert sorted(dots.get_array().tolist()) == [3, 15]  # the colour encodes how many images share the size
    assert [text.get_text() for text in normal.texts] == ["44×40: 15"]  # the frequent size, labelled
    assert [text.get_text() for text in pneumonia.texts] == ["44×40: 18"]
    assert isinstance(dots.norm, matplotlib.colors.LogNorm) and dots.norm.vmax == 18
    assert figure.axes[-1].get_ylabel() == "images at this size (log scale)"
    assert (tmp_path / "sizes.png").stat().st_size > 0


def test_black_pixel_maps_show_one_panel_per_class_on_one_scale():
    maps = {"PNEUMONIA": np.full((4, 4), 0.25), "NORMAL": np.eye(4)}
    figure = plots.plot_black_pixel_maps(maps)
    normal, pneumonia = figure.axes[:2]
    assert [normal.get_title(), pneumonia.get_title()] == ["NORMAL", "PNEUMONIA"]
    assert (normal.images[0].get_array() == np.eye(4)).all()
    assert normal.images[0].get_clim() == pneumonia.images[0].get_clim() == (0, 1)
    assert figure.axes[-1].get_ylabel() == "share of images black here"


def test_sample_images_show_one_row_per_class_at_the_stored_size(tree_images, tmp_path):
    train = tree_images[tree_images["split"] == "train"]
    figure = plots.plot_sample_images(train, n_per_class=3, seed=0, save_to=tmp_path / "samples.png")
    shown = [ax for ax in figure.axes if ax.images]
    assert len(figure.axes) == 6 and len(shown) == 6 and (tmp_path / "samples.png").exists()
    assert all(ax.images[0].get_array().shape[:2] == (40, 44) for ax in shown)
    assert [ax.get_title().split("\n")[0] for ax in shown] == ["NORMAL"] * 3 + ["PNEUMONIA"] * 3
    expected = data.sample_per_class(train, 3, seed=0)["patient_id"].tolist()
    assert [ax.get_title().split("\n")[1] for ax in shown] == expected


def test_sample_images_are_capped_by_the_smallest_class(tree_images):
    val = tree_images[tree_images["split"] == "val"]
    figure = plots.plot_sample_images(val, n_per_class=5, loader=lambda path: np.zeros((8, 8), np.uint8))
    assert len(figure.axes) == 4 and all(ax.images for ax in figure.axes)


def test_intensity_histograms_put_each_class_mean_in_the_legend(tree_images):
    sizes = set()

    def loader(path, image_size):
        sizes.add(image_size)
        return np.full((image_size, image_size, 3), 200 if "PNEUMONIA" in path else 50, dtype=np.uint8)

    ax = plots.plot_intensity_histograms(tree_images, n_per_class=5, image_size=16, loader=loader).axes[0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["NORMAL (mean 50)", "PNEUMONIA (mean 200)"]
    assert ax.get_title() == "Pixel intensities: 5 images per class at 16x16" and sizes == {16}



def defined_names(module) -> set[str]:
    """Public names a module defines at its top level (functions, classes and assigned constants), read from its
    source."""
    tree = ast.parse(inspect.getsource(module))
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assigned = {target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for target in ast.walk(node) if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store)}
    return {name for name in defined | assigned if not name.startswith("_")}


PLOT_MODULES = sorted(info.name for info in pkgutil.iter_modules(plots.__path__))  # every module of the package


def test_the_package_walk_finds_its_modules():
    assert {"style", "training", "evaluation", "images", "data", "search", "study", "gradcam", "calibration",
            "subgroups"} <= set(PLOT_MODULES)


@pytest.mark.parametrize("module", PLOT_MODULES)
def test_package_re_exports_every_public_name_of_its_modules(module):
    submodule = importlib.import_module(f"cxrlib.plots.{module}")
    own = defined_names(submodule)
    assert own, f"cxrlib.plots.{module} defines no public name"
    assert not own - set(plots.__all__), f"add to cxrlib.plots.__all__ (or make private): {sorted(own - set(plots.__all__))}"
    assert [name for name in own if getattr(plots, name) is not getattr(submodule, name)] == []


def test_the_package_exports_only_names_its_modules_define():
    defined = set().union(*(defined_names(importlib.import_module(f"cxrlib.plots.{module}")) for module in PLOT_MODULES))
    assert sorted(set(plots.__all__) - defined) == [] and len(plots.__all__) == len(set(plots.__all__))


def test_seed_labels_share_one_label_where_values_are_close_so_none_overlap():
    values = pd.Series({1: 0.90, 3: 0.951, 5: 0.9515, 2: 0.97, 4: 0.93})
    assert plots.seed_labels(values, 0.07) == [(0.90, "1"), (0.93, "4"), (pytest.approx(0.95125), "3, 5"), (0.97, "2")]
    assert plots.seed_labels(values, 0.001) == [(value, str(seed)) for seed, value in values.sort_values().items()]
    assert plots.seed_labels(pd.Series({2001: 0.95, 2002: 0.95}), 0.0) == [(0.95, "2001, 2002")]


def test_seed_pairs_write_each_seed_once_beside_the_compared_model():
    rows = [{"model": model, "seed": seed, "roc_auc": auc, "accuracy": acc}
            for seed, shift in ((1, 0.0), (2, 0.004), (3, 0.02)) for model, auc, acc in
            (("resnet50", 0.96 + shift, 0.90), ("densenet121", 0.95 + shift, 0.92 + shift / 100))]
    differences = pd.DataFrame([{"metric": metric, "mean_difference": -0.01, "ci_low": -0.02, "ci_high": 0.0}
                                for metric in ("roc_auc", "accuracy")])
    figure = plots.plot_seed_pairs(pd.DataFrame(rows), differences, "resnet50", "densenet121", ["roc_auc", "accuracy"])
    labels = [[text.get_text() for text in ax.texts] for ax in figure.axes[::2]]
    assert sorted(labels[0]) == ["1", "2", "3"] and labels[1] == ["1, 2, 3"]  # accuracies all but equal
