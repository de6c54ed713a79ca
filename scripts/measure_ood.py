"""How often a run's OOD flag fires: on the held-out test X-rays, on clearly foreign images and on altered X-rays.

    python scripts/measure_ood.py RUN_DIR [--train ARCH --seed K] [--data-dir DIR] [--out reports/ood_flag_rates.md]

RUN_DIR is a finished run, or with --train the run trained there first with profiles/cpu.yaml's recipe (training
and split seed K; a finished run with the same settings is reused). A run without an OOD model gets one first,
as `python -m cxrlib.ood fit` fits it. The data set is $CXR_DATA_DIR (or --data-dir). Foreign images: blank images (black, mid-gray, white), noise
(uniform colour and grayscale, 10 seeds each) and scikit-learn's two sample photographs with their four
quadrants each; altered X-rays: every test X-ray inverted, and rotated by 90 degrees. Writes a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from cxrlib import data  # noqa: E402
from cxrlib.contract import ARCHS, OOD_FILE, PROFILES_DIR, REPO_ROOT, REPORTS_DIR, RUN_RECORD_FILE  # noqa: E402
from cxrlib.files import write_atomic  # noqa: E402
from cxrlib.quiet import tensorflow_quietly  # noqa: E402

NOISE_SEEDS = range(10)


def train_cpu_recipe(run_dir: Path, arch: str, seed: int, data_dir) -> None:
    """Train `arch` with profiles/cpu.yaml's recipe (training and split seed `seed`) into run_dir, or find it finished."""
    import yaml

    from cxrlib.params import train_config_values
    from cxrlib.train import TrainConfig, train

    params = yaml.safe_load((PROFILES_DIR / "cpu.yaml").read_text())
    index = data.scan_dataset(data.locate_data(data_dir))
    config = TrainConfig(arch=arch, name=arch, **train_config_values(params, seed, seed))
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


def flag_row(name: str, frame: pd.DataFrame) -> dict:
    """One table row: images, flagged share, and how many the model labels PNEUMONIA."""
    return {"images": name, "n": len(frame), "flagged": int(frame["ood_flag"].sum()),
            "flag rate": f"{frame['ood_flag'].mean():.1%}", "labelled PNEUMONIA": f"{(frame['label'] == 'PNEUMONIA').mean():.0%}",
            "median OOD distance": f"{frame['ood_distance'].median():.1f}"}


def measure(run_dir: Path, data_dir, scratch: Path) -> tuple[pd.DataFrame, dict]:
    """The table of flag rates per image group and the run record."""
    from cxrlib.ood.__main__ import fit_run
    from cxrlib.predict import predict

    if not (run_dir / OOD_FILE).exists():
        fit_run(run_dir, data_dir)
    record = json.loads((run_dir / RUN_RECORD_FILE).read_text())
    index = data.scan_dataset(data.locate_data(data_dir))
    test = sorted(index.images.loc[index.images["split"] == "test", "path"])
    groups = {"held-out test X-rays": [Path(path) for path in test], **foreign_images(scratch / "foreign"),
              **altered_xrays(test, scratch / "altered")}
    rows = []
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # one model per group: Keras' retracing notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predict's own notices; the table says what matters
        for name, paths in groups.items():
            rows.append(flag_row(name, predict(run_dir, paths)))
    return pd.DataFrame(rows), record


def markdown(table: pd.DataFrame, record: dict, run_dir: Path, command: str) -> str:
    """The report: what was measured with which run, the command, and the table."""
    ood = record["ood"]
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "".join("| " + " | ".join(str(value) for value in row) + " |\n" for row in table.itertuples(index=False))
    return (f"# OOD flag rates\n\nRun `{run_dir}` ({record['arch']}, seed {record['seed']}, "
            f"{record['config']['image_size']} px, {record['config']['epochs']} epochs): Mahalanobis distance on the "
            f"`{ood['layer']}` features, fitted on {ood['images']['train']} training images; flag threshold "
            f"{ood['threshold']:.2f}, declared rate {ood['flag_rate']:.0%} (the validation images' "
            f"{1 - ood['flag_rate']:.0%} quantile; it flags {ood['val_flagged']:.1%} of the {ood['images']['val']} "
            f"validation images).\n\nMade with:\n\n```bash\n{command}\n```\n\n{header}{body}")


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
        table, record = measure(args.run_dir, args.data_dir, Path(scratch))
    command = shlex.join(["python", os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]])
    write_atomic(args.out, markdown(table, record, args.run_dir, command))
    print(table.to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
