"""How often a run's OOD flag fires, beside the previous detector's: on the held-out test X-rays, on clearly foreign
images and on altered X-rays.

    python scripts/measure_ood.py RUN_DIR [--train ARCH --seed K] [--data-dir DIR] [--out reports/ood_flag_rates.md]

RUN_DIR is a finished run, or with --train the run trained there first with profiles/cpu.yaml's recipe (training
and split seed K; a finished run with the same settings is reused). A run without a current OOD model gets one
first, as `python -m cxrlib.ood fit` fits it. The previous detector (Mahalanobis on the pooled features only) is
fitted on the same training images and thresholded on the same validation images, and scores the same images as
the run's own detector does through `cxrlib.predict`. The data set is $CXR_DATA_DIR (or --data-dir). Foreign
images: blank images (black, mid-gray, white), noise (uniform colour and grayscale, 10 seeds each) and
scikit-learn's two sample photographs with their four quadrants each; altered X-rays: every test X-ray inverted,
and rotated by 90 degrees. Writes a Markdown report with the flag rates and which layers flag.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from cxrlib import data, runtime  # noqa: E402
from cxrlib.backbones import title_of  # noqa: E402
from cxrlib.contract import (ARCHS, OOD_FILE, OOD_FLAG_RATE, REPO_ROOT, REPORTS_DIR,  # noqa: E402
                             RUN_RECORD_FILE)
from cxrlib.files import write_atomic  # noqa: E402
from cxrlib.ood import OodFileError, fit_detector, load_detector  # noqa: E402
from cxrlib.quiet import tensorflow_quietly  # noqa: E402

NOISE_SEEDS = range(10)
PREVIOUS, CURRENT = "previous (pool only)", "multi-layer"


def train_cpu_recipe(run_dir: Path, arch: str, seed: int, data_dir) -> None:
    """Train `arch` with profiles/cpu.yaml's recipe (training and split seed `seed`) into run_dir, or find it finished."""
    from cxrlib.params import check, read_profile, train_config_values
    from cxrlib.train import TrainConfig, train

    params = check(read_profile("cpu"))
    index = data.scan_dataset(data.locate_data(data_dir))
    config = TrainConfig(arch=arch, name=arch, **train_config_values(params, seed, seed, arch))
    train(data.replicate_frame(index.images, params, seed), run_dir, config, data_fingerprint=index.fingerprint)


def foreign_images(folder: Path) -> dict[str, list[Path]]:
    """Blank images, noise and natural photographs written into `folder`, by group."""
    from sklearn.datasets import load_sample_images

    folder.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[Path]] = {"blank (black, gray, white)": [], "uniform noise (colour and gray)": [],
                                     "natural photographs (scikit-learn samples + quadrants)": []}
    for value in (0, 128, 255):
        groups["blank (black, gray, white)"].append(save(np.full((512, 512), value, np.uint8), folder / f"blank{value}.png"))
    for seed in NOISE_SEEDS:
        rng = np.random.default_rng(seed)
        noise = groups["uniform noise (colour and gray)"]
        noise.append(save(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), folder / f"noise-colour{seed}.png"))
        noise.append(save(rng.integers(0, 256, (512, 512), dtype=np.uint8), folder / f"noise-gray{seed}.png"))
    for number, photo in enumerate(load_sample_images().images):
        height, width = photo.shape[:2]
        crops = {"whole": photo, **{f"quadrant{row}{col}": photo[row * height // 2:(row + 1) * height // 2,
                                                                  col * width // 2:(col + 1) * width // 2]
                                    for row in (0, 1) for col in (0, 1)}}
        for name, pixels in crops.items():
            groups["natural photographs (scikit-learn samples + quadrants)"].append(
                save(np.ascontiguousarray(pixels), folder / f"photo{number}-{name}.png"))
    return groups


def altered_xrays(paths: list[str], folder: Path) -> dict[str, list[Path]]:
    """Every test X-ray inverted, and rotated by 90 degrees, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[Path]] = {"test X-rays, inverted": [], "test X-rays, rotated 90 degrees": []}
    for number, path in enumerate(paths):
        with Image.open(path) as image:
            gray = ImageOps.exif_transpose(image).convert("L")
        groups["test X-rays, inverted"].append(save(np.asarray(ImageOps.invert(gray)), folder / f"inverted{number}.png"))
        groups["test X-rays, rotated 90 degrees"].append(
            save(np.asarray(gray.transpose(Image.Transpose.ROTATE_90)), folder / f"rotated{number}.png"))
    return groups


def save(pixels: np.ndarray, path: Path) -> Path:
    """Write pixels as a PNG; returns the path."""
    Image.fromarray(pixels).save(path)
    return path


def current_detector(run_dir: Path, data_dir):
    """The run's OOD detector, fitted first (as `python -m cxrlib.ood fit` does) when it is missing or outdated."""
    from cxrlib.ood.__main__ import fit_run

    try:
        return load_detector(run_dir / OOD_FILE)
    except OodFileError as error:
        print(f"refitting: {error}", file=sys.stderr)
        fit_run(run_dir, data_dir)
        return load_detector(run_dir / OOD_FILE)


def previous_detector(run_dir: Path, record: dict, data_dir, current):
    """The previous detector (pooled features only) fitted on the run's training images, thresholded on validation;
    the current one refitted on the same features must equal the run's (a check that both saw the same images)."""
    from cxrlib.contract import MODEL_FILE
    from cxrlib.models import load_model
    from cxrlib.ood.__main__ import run_subsets
    from cxrlib.ood.layers import POOLED, layer_features, scoring_model

    subsets = run_subsets(record, run_dir, data_dir, val_fraction=0.1, subsample_per_class=None)  # the cpu profile's
    model = load_model(run_dir / MODEL_FILE)
    layers = (*current.layers, POOLED)
    scorer = scoring_model(model, layers)
    features = {name: layer_features(scorer, layers, rows, model.input_shape[1], desc=f"{name} features")
                for name, rows in subsets.items()}
    refit = fit_detector(features["train"], subsets["train"]["target"], features["val"], current.rate, current.layers)
    if not np.isclose(refit.threshold, current.threshold, rtol=1e-4):
        raise SystemExit(f"the multi-layer detector refitted here has threshold {refit.threshold:.4f}, the run's "
                         f"{run_dir / OOD_FILE} {current.threshold:.4f}: they did not see the same images or model")
    previous = fit_detector(features["train"], subsets["train"]["target"], features["val"], current.rate, (POOLED,))
    val_flagged = {PREVIOUS: previous.flags(previous.scores(features["val"])).mean(),
                   CURRENT: current.flags(current.scores(features["val"])).mean()}
    return previous, val_flagged


def flag_rows(groups: dict[str, list[Path]], flags: dict[str, np.ndarray], labels: pd.Series) -> pd.DataFrame:
    """One row per image group: its size, each detector's flagged share, and how many the model labels PNEUMONIA."""
    rows, start = [], 0
    for name, paths in groups.items():
        rows_of = slice(start, start + len(paths))
        start += len(paths)
        row = {"images": name, "n": len(paths)}
        for detector, flagged in flags.items():
            row[f"flagged, {detector}"] = f"{int(flagged[rows_of].sum())} ({flagged[rows_of].mean():.1%})"
        row["labelled PNEUMONIA"] = f"{(labels.iloc[rows_of] == 'PNEUMONIA').mean():.0%}"
        rows.append(row)
    return pd.DataFrame(rows)


def layer_rows(groups: dict[str, list[Path]], features: dict[str, np.ndarray], detector) -> pd.DataFrame:
    """Per image group, the share of images whose standardised distance on each layer exceeds the threshold."""
    standardised = (detector.layer_distances(features) - detector.centers) / detector.scales
    rows, start = [], 0
    for name, paths in groups.items():
        part = standardised[start:start + len(paths)] > detector.threshold
        start += len(paths)
        shares = part.mean(axis=0)
        rows.append({"images": name, **{layer: f"{share:.1%}" for layer, share in zip(detector.layers, shares)}})
    return pd.DataFrame(rows)


def group_features(run_dir: Path, paths: list[str], layers) -> dict[str, np.ndarray]:
    """{layer: pooled features} of the images through the run's model."""
    from cxrlib.contract import MODEL_FILE
    from cxrlib.models import load_model
    from cxrlib.ood.layers import layer_features, scoring_model

    model = load_model(run_dir / MODEL_FILE)
    frame = pd.DataFrame({"path": paths, "target": 0})
    return layer_features(scoring_model(model, layers), layers, frame, model.input_shape[1], desc="image features")


def measure(run_dir: Path, data_dir, scratch: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    """The flag-rate table (both detectors), the per-layer table, the run record and the detectors' facts."""
    from cxrlib.ood.layers import POOLED
    from cxrlib.predict import predict_files, read_run

    current = current_detector(run_dir, data_dir)
    record = json.loads((run_dir / RUN_RECORD_FILE).read_text())
    previous, val_flagged = previous_detector(run_dir, record, data_dir, current)
    index = data.scan_dataset(data.locate_data(data_dir))
    test = sorted(index.images.loc[index.images["split"] == "test", "path"])
    groups = {"held-out test X-rays": [Path(path) for path in test], **foreign_images(scratch / "foreign"),
              **altered_xrays(test, scratch / "altered")}
    paths = [str(path) for group in groups.values() for path in group]
    predicted = predict_files(read_run(run_dir, None), paths)  # what users get: the run's detector
    features = group_features(run_dir, paths, (*current.layers, POOLED))
    if not np.allclose(current.scores(features), predicted["ood_score"], rtol=1e-4, atol=1e-4):
        raise SystemExit("the OOD scores of cxrlib.predict and of this script's features differ")
    flags = {PREVIOUS: previous.flags(previous.scores(features)), CURRENT: predicted["ood_flag"].to_numpy(bool)}
    facts = {"thresholds": {PREVIOUS: previous.threshold, CURRENT: current.threshold}, "val_flagged": val_flagged,
             "previous_distance": float(previous.centers[0] + previous.scales[0] * previous.threshold)}
    return flag_rows(groups, flags, predicted["label"]), layer_rows(groups, features, current), record, facts


def table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table."""
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join(str(value) for value in row) + " |\n"
                            for row in frame.itertuples(index=False))


def shown_path(path: Path) -> str:
    """A path as a committed report may show it: relative to the repository, else the placeholder RUN_DIR (a
    report must not hold this machine's folders)."""
    resolved = Path(path).resolve()
    return resolved.relative_to(REPO_ROOT).as_posix() if resolved.is_relative_to(REPO_ROOT) else "RUN_DIR"


def markdown(flags: pd.DataFrame, layers: pd.DataFrame, record: dict, facts: dict, run_dir: Path, command: str) -> str:
    """The report: the run, both detectors, the command, the CPU and the tables."""
    ood, config = record["ood"], record["config"]
    val = ", ".join(f"{name} {share:.1%}" for name, share in facts["val_flagged"].items())
    start = "from scratch" if config["weights"] is None else f"from weights {config['weights']}"
    return (
        f"# OOD flag rates\n\n"
        f"Run `{shown_path(run_dir)}`"
        + (" (a run directory outside the repository)" if shown_path(run_dir) == "RUN_DIR" else "")
        + f": {title_of(record['arch'])} trained {start}, training and split seed {record['seed']}, "
        f"{config['image_size']} px, {config['epochs']} epochs (best epoch "
        f"{record['best_epoch'] + 1}, best validation ROC-AUC {record['best_val_auc']:.4f}); {ood['images']['train']} "
        f"training and {ood['images']['val']} validation images.\n\n"
        f"- **{PREVIOUS}**: the previous detector (format `mahalanobis-v1`), Mahalanobis distance (Lee et al. 2018) "
        f"to the nearer class mean of the `pool` features (the classifier head's input), fitted on the training "
        f"images; flag threshold {facts['thresholds'][PREVIOUS]:.2f} standardised (Mahalanobis distance "
        f"{facts['previous_distance']:.2f}; with one layer the standardisation changes no flag).\n"
        f"- **{CURRENT}**: the run's detector (`{OOD_FILE}`, {ood['method']}): one Mahalanobis distance per layer on "
        f"the global-average-pooled outputs of {', '.join(f'`{layer}`' for layer in ood['layers'])}, each "
        f"standardised by the median and interquartile range of the validation images' distances; the OOD score is "
        f"the largest over the layers; flag threshold {facts['thresholds'][CURRENT]:.2f}.\n\n"
        f"Both thresholds are the validation images' {1 - ood['flag_rate']:.0%} quantile (declared rate "
        f"{ood['flag_rate']:.0%}); on the validation images they flag {val}.\n\n"
        f"Made on {runtime.cpu_kind()} with:\n\n```bash\n{command}\n```\n\n"
        f"## Flagged images\n\n{table(flags)}\n"
        f"## Which layers flag (multi-layer detector)\n\nThe share of each group's images whose standardised distance "
        f"on that layer alone exceeds the flag threshold (an image is flagged when any layer does):\n\n{table(layers)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--train", choices=ARCHS, metavar="ARCH", help="train this architecture into RUN_DIR first")
    parser.add_argument("--seed", type=int, default=1, help="training and split seed with --train (default 1)")
    parser.add_argument("--data-dir", help="the data set (default: $CXR_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "ood_flag_rates.md")
    args = parser.parse_args()
    with tensorflow_quietly(), tempfile.TemporaryDirectory() as scratch:
        if args.train:
            train_cpu_recipe(args.run_dir, args.train, args.seed, args.data_dir)
        flags, layers, record, facts = measure(args.run_dir, args.data_dir, Path(scratch))
    if record["ood"]["flag_rate"] != OOD_FLAG_RATE:
        print(f"note: the run declares flag rate {record['ood']['flag_rate']}, cxrlib {OOD_FLAG_RATE}", file=sys.stderr)
    arguments = [shown_path(args.run_dir) if argument == str(args.run_dir) else argument for argument in sys.argv[1:]]
    command = shlex.join(["python", os.path.relpath(sys.argv[0], REPO_ROOT), *arguments])
    write_atomic(args.out, markdown(flags, layers, record, facts, args.run_dir, command))
    print(flags.to_string(index=False))
    print(layers.to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
