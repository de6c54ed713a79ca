"""What several test modules share, in one place: generated image trees, fabricated runs, run directories and
records, study plans, a sample of scores, index frames and how to start a command line. Test modules import from
here (``from helpers import ...``; tests/ is on sys.path), never from one another; fixtures live in conftest.py."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib import compare, evaluate
from cxrlib.contract import CLASS_NAMES, REPO_ROOT

# --- generated image trees ------------------------------------------------------------------------------

def patient_names(label: str, count: int, start: int) -> list[str]:
    """File names in the data set's own naming forms, two images per patient."""
    names = []
    for i in range(count):
        patient = start + i // 2
        if label == CLASS_NAMES[0]:
            names.append(f"IM-{patient:04d}-{i % 2 + 1:04d}.jpeg")
        else:
            kind = "bacteria" if i % 3 else "virus"
            names.append(f"person{patient}_{kind}_{i}.jpeg")
    return names


def blob_image(rng: np.random.Generator, target: int, size: int = 40) -> np.ndarray:
    """Grayscale noise; PNEUMONIA (target 1) images carry a bright blob, so a model can learn the label."""
    pixels = rng.integers(0, 120, size=(size, size + 4), dtype=np.uint8)
    if target:
        pixels[size // 4 : size // 2, size // 4 : size // 2] = 250
    return pixels


def write_tree(root: Path, per_class: dict[str, int] | None = None, size: int = 40, seed: int = 0,
               image_of=None) -> Path:
    """Write a tiny Kaggle-layout tree of grayscale JPEGs, each made by ``image_of(rng, target)`` (default:
    ``blob_image`` of ``size``)."""
    per_class = per_class or {"train": 12, "val": 2, "test": 4}
    image_of = image_of or (lambda rng, target: blob_image(rng, target, size))
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for target, label in enumerate(CLASS_NAMES):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for name in patient_names(label, count, start=1):
                Image.fromarray(image_of(rng, target), mode="L").save(folder / name, quality=90)
    return root


def write_odd_images(folder: Path, size: int = 36) -> dict[str, str]:
    """Readable images in unusual formats (as a hospital export might hold); returns {file name: PIL mode}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 255, size=(size, size + 10), dtype=np.uint8)
    images = {
        "IM-0901-0001.png": Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 128)])),
        "IM-0902-0001.png": Image.fromarray(gray.astype(np.uint16) * 16 + 1000),
        "IM-0903-0001.jpg": Image.fromarray(np.dstack([gray] * 3)).convert("CMYK"),
        "IM-0904-0001.PNG": Image.fromarray(gray).convert("P"),
    }
    for name, image in images.items():
        image.save(folder / name)
    return {name: image.mode for name, image in images.items()}


# --- a data index without images ------------------------------------------------------------------------

def index_frame(patients: dict[tuple[str, str], list[int]], sizes: list[tuple[int, int]] | None = None) -> pd.DataFrame:
    """Rows shaped like scan_dataset().images, sorted as it sorts them; ``patients[(split, label)]`` lists images per
    patient. ``sizes`` gives each image's (width, height) in the order the patients list them (default 224 x 224)."""
    rows = []
    for (split, label), counts in patients.items():
        for number, count in enumerate(counts):
            patient_id = f"{'IM' if label == 'NORMAL' else 'person'}-{number}"
            for image in range(count):
                relpath = f"{split}/{label}/{patient_id}-{image}.jpeg"
                rows.append({"path": f"/data/{relpath}", "relpath": relpath, "split": split, "label": label,
                             "target": int(label == "PNEUMONIA"), "patient_id": patient_id,
                             "patient_key": f"{split}/{patient_id}"})
    frame = pd.DataFrame(rows)
    width, height = zip(*(sizes or [(224, 224)] * len(frame)))
    return frame.assign(width=width, height=height).sort_values(["split", "label", "path"]).reset_index(drop=True)


# --- scores, runs and run directories -------------------------------------------------------------------

def scored_sample(n_neg=60, n_pos=100, separation=1.0, seed=0, decimals=2):
    """Labels and rounded (so that ties occur) probabilities from two overlapping normal distributions."""
    rng = np.random.default_rng(seed)
    y_true = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    return y_true, np.round(1 / (1 + np.exp(-rng.normal(separation * y_true, 1.0))), decimals)


def missed_run(arch: str, seed: int, missed: int, *, val_shift: float = 0.0, name: str | None = None,
               split_seed: int | None = None) -> compare.Run:
    """A run at the fixed threshold 0.5 whose 5 NORMAL test images score 0.1-0.45 and whose 5 PNEUMONIA test images
    score 0.95, 0.9, 0.8, 0.7, 0.6 except that the first ``missed`` score 0.01, 0.02, ... instead: test accuracy at 0.5
    is (10 - missed) / 10 and ROC-AUC 1 - missed / 5. Validation: 8 NORMAL at 0.05 + 0.55k/7 and 8 PNEUMONIA at
    0.4 + 0.58k/7 - ``val_shift`` (k = 0..7)."""
    positives = [0.01 * (k + 1) for k in range(missed)] + [0.95, 0.9, 0.8, 0.7, 0.6][missed:]
    val_probs = np.r_[np.linspace(0.05, 0.6, 8), np.linspace(0.4, 0.98, 8) - val_shift]
    rows = [("val", 0, f"v{i}", p) for i, p in enumerate(val_probs[:8])]
    rows += [("val", 1, f"v{8 + i}", p) for i, p in enumerate(val_probs[8:])]
    rows += [("test", 0, f"n{i}", p) for i, p in enumerate([0.1, 0.2, 0.3, 0.4, 0.45])]
    rows += [("test", 1, f"p{i}", p) for i, p in enumerate(positives)]
    predictions = pd.DataFrame([{"path": f"/data/{subset}/{'PNEUMONIA' if target else 'NORMAL'}/{image}.jpeg",
                                 "subset": subset, "label": "PNEUMONIA" if target else "NORMAL", "target": target,
                                 "patient_id": image, "prob": prob} for subset, target, image, prob in rows])
    config = {"weights": None, "image_size": 96, "split_seed": seed if split_seed is None else split_seed}
    return compare.Run(name=name or arch, arch=arch, info={"seed": seed, "config": config}, predictions=predictions,
                       threshold=0.5, threshold_info={"policy": "fixed", "value": 0.5})


def fake_predictions(n_val=40, n_test=80, separation=2.0, seed=0) -> pd.DataFrame:
    """predictions.csv rows: balanced-ish val and test subsets with scores that separate the classes."""
    rng = np.random.default_rng(seed)
    rows = []
    for subset, count in (("val", n_val), ("test", n_test)):
        targets = (np.arange(count) % 5 < 3).astype(int)  # 60% PNEUMONIA, as in the Kermany test split
        probs = np.round(1 / (1 + np.exp(-rng.normal(separation * (targets - 0.5), 1.0))), 3)
        for i, (target, prob) in enumerate(zip(targets, probs)):
            label = "PNEUMONIA" if target else "NORMAL"
            rows.append({"path": f"/data/{subset}/{label}/img{i:03d}.jpeg", "subset": subset, "label": label,
                         "target": target, "patient_id": f"p{i // 2}", "prob": prob})
    return pd.DataFrame(rows)


def write_run(run_dir, arch="resnet50", separation=2.0, seed=0, predictions=None, policy="youden"):
    """A run directory as cxrlib.train writes it, with the threshold chosen on the val rows."""
    run_dir.mkdir(parents=True, exist_ok=True)
    predictions = fake_predictions(separation=separation, seed=seed) if predictions is None else predictions
    val = predictions[predictions["subset"] == "val"]
    threshold = evaluate.choose_threshold(val["target"], val["prob"], policy)
    predictions.to_csv(run_dir / "predictions.csv", index=False)
    epochs = np.arange(1, 4)
    pd.DataFrame({"epoch": epochs, "loss": 1 / epochs, "accuracy": 0.7 + 0.05 * epochs, "auc": 0.8 + 0.03 * epochs,
                  "val_loss": 1.2 / epochs, "val_accuracy": 0.65 + 0.05 * epochs, "val_auc": 0.75 + 0.04 * epochs,
                  "learning_rate": 1e-3}).to_csv(run_dir / "history.csv", index=False)
    info = {"name": f"quick-{arch}", "arch": arch, "config": {"arch": arch}, "seed": seed, "best_epoch": 3,
            "timing": {"train": 12.5, "predict": 1.5, "training": 12.5}, "images_per_sec": None, "model_size_mb": 90.1,
            "latency_ms": 35.0, "params": {"total": 1000, "trainable": 900, "non_trainable": 100},
            "threshold": {"policy": policy, "value": threshold, "target_sensitivity": 0.95}}
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


# --- records, pages and plans ---------------------------------------------------------------------------

def fabricated_record(**changes) -> dict:
    """A runner.json record of a finished cpu run (three notebooks), with ``changes`` applied."""
    notebooks_run = {"01_data_exploration": {"title": "1 · The data", "kind": "explore", "seconds": 19.7,
                                             "finished": "2026-11-26T02:21:47"},
                     "02_train_resnet50": {"title": "Training ResNet-50", "kind": "train", "seconds": 2506.5,
                                           "finished": "2026-11-26T03:03:34"},
                     "04_compare_models": {"title": "4 · Comparing the models", "kind": "compare", "seconds": 32.3,
                                           "finished": "2026-11-26T03:37:08"}}
    return {"profile": "cpu", "profile_file": "profiles/cpu.yaml", "parameters": {"data_dir": None, "seeds": [1, 2],
            "augment": True, "learning_rate": 0.001}, "overrides": {"sampling_seed": 43}, "retrain": False,
            "ran": list(notebooks_run), "notebooks": notebooks_run, "started": "2026-11-26T02:21:27",
            "wall_seconds": 4540.8, "peak_memory_mb": 2930, "code_version": {"commit": "38ecd93", "modified": True},
            "machine": "2-core CPU, no GPU", "reports_dir": "reports/cpu", "runs_dir": "runs/cpu", "note": "",
            **changes}


def local_links(page: str) -> list[str]:
    """The href and src targets of a page that point into the report tree (not the web, data or anchors)."""
    return [link for link in re.findall(r'(?:href|src)="([^"]+)"', page)
            if not link.startswith(("http:", "https:", "data:", "#", "mailto:"))]


# A Chromium binary for the page tests (None when absent: those tests skip, saying so).
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)


# A confirmatory study plan cxrlib.plan accepts, and a factorial one (tests change one key at a time).
VALID = {"title": "Test study", "kind": "confirmatory", "document": "README.md", "profile": "smoke",
         "records": "reports/smoke/runs", "seeds": [11, 12, 13], "primary_policy": "fixed", "reference": "resnet50",
         "compared": "densenet121", "decision_metrics": ["roc_auc"], "level": 0.95, "focus_seed": 11,
         "expectations": [{"model": "resnet50", "metric": "roc_auc", "statistic": "mean", "bound": "at_least",
                           "value": 0.9}]}
FACTORIAL = {"title": "Test factorial", "kind": "factorial", "document": "README.md", "profile": "smoke",
             "records": "reports/smoke/runs", "seeds": [11, 12], "primary_policy": "fixed",
             "recipes": {"S": "shared", "T": "tuned"},
             "cells": {"resnet50": {"S": "other", "T": "test"}, "densenet121": {"S": "test", "T": "other"}},
             "contrasts": [{"name": "architecture_T", "role": "primary",
                            "terms": {"densenet121/T": 1, "resnet50/T": -1}},
                           {"name": "interaction", "role": "secondary",
                            "terms": {"densenet121/T": 1, "resnet50/T": -1, "densenet121/S": -1, "resnet50/S": 1}}],
             "primary_metric": "roc_auc", "decision_metrics": ["roc_auc", "accuracy"], "level": 0.95,
             "adjustment": "bonferroni", "focus_seed": 11,
             "expectations": [{"of": "architecture_T", "metric": "roc_auc", "statistic": "half_width",
                               "bound": "at_most", "value": 0.006}]}


# --- command lines --------------------------------------------------------------------------------------

def run_module(module: str, *args, data_dir=None) -> subprocess.CompletedProcess:
    """``python -m <module> ARGS`` from the repository root, output captured (CXR_DATA_DIR set when data_dir is
    given)."""
    env = {**os.environ, **({"CXR_DATA_DIR": str(data_dir)} if data_dir else {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
