"""Small generated runs for the reader sections' tests: 12 test images (4 NORMAL, 4 bacterial, 4 viral pneumonia),
10 validation images, a history, and a data index with two stored sizes."""
import numpy as np
import pandas as pd

from cxrlib import compare

TEST_FILES = ([("NORMAL", f"IM-{k:04d}-0001.jpeg") for k in range(1, 5)]
              + [("PNEUMONIA", f"person{k}_bacteria_{k}.jpeg") for k in range(1, 5)]
              + [("PNEUMONIA", f"person{k}_virus_{k + 10}.jpeg") for k in range(5, 9)])
VAL_PROBS = [0.05, 0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9, 0.95]  # 5 NORMAL, then 5 PNEUMONIA


def prediction_rows(test_probs) -> pd.DataFrame:
    """predictions.csv rows: the 10 validation images, then the 12 test images with ``test_probs``."""
    rows = [{"path": f"train/{'PNEUMONIA' if k >= 5 else 'NORMAL'}/v{k}.jpeg", "subset": "val",
             "label": "PNEUMONIA" if k >= 5 else "NORMAL", "prob": prob} for k, prob in enumerate(VAL_PROBS)]
    rows += [{"path": f"test/{label}/{name}", "subset": "test", "label": label, "prob": prob}
             for (label, name), prob in zip(TEST_FILES, test_probs)]
    frame = pd.DataFrame(rows)
    return frame.assign(target=(frame["label"] == "PNEUMONIA").astype(int),
                        patient_id=frame["path"].str.extract(r"/((?:person\d+)|(?:IM-\d+)|v\d+)")[0])


def history(epochs: int = 3, shift: float = 0.0) -> pd.DataFrame:
    """history.csv of a run whose validation ROC-AUC peaks at the second epoch."""
    return pd.DataFrame({"epoch": range(epochs), "loss": np.linspace(0.9, 0.3, epochs) + shift,
                         "val_loss": np.linspace(0.8, 0.4, epochs) + shift, "auc": np.linspace(0.7, 0.95, epochs),
                         "val_auc": [0.8, 0.97, 0.9][:epochs]})


def fake_run(arch: str, seed: int, test_probs, calibration: dict | None = None) -> compare.Run:
    """A run of ``arch`` and replicate ``seed`` at the threshold 0.5, with a recorded calibration when given."""
    info = {"seed": seed, "config": {"image_size": 96}} | ({"calibration": calibration} if calibration else {})
    return compare.Run(name=arch, arch=arch, info=info, predictions=prediction_rows(test_probs), threshold=0.5,
                       history=history(shift=0.01 * seed), threshold_info={"policy": "fixed", "value": 0.5})


# Per image: ResNet-50 misses two viral images and calls one NORMAL image PNEUMONIA; DenseNet-121 misses one viral.
RESNET = [0.1, 0.2, 0.3, 0.7, 0.9, 0.8, 0.95, 0.6, 0.2, 0.3, 0.9, 0.8]
DENSENET = [0.1, 0.1, 0.2, 0.4, 0.9, 0.9, 0.9, 0.7, 0.3, 0.6, 0.9, 0.9]


def study_runs(seeds=(1, 2, 3)) -> list[compare.Run]:
    """Both models in every replicate; in replicate 3 DenseNet-121 also misses the last viral image."""
    runs = []
    for seed in seeds:
        densenet = list(DENSENET)
        if seed == 3:
            densenet[11] = 0.45
        runs += [fake_run("resnet50", seed, RESNET), fake_run("densenet121", seed, densenet)]
    return runs


def index_images() -> pd.DataFrame:
    """A data index holding the test images (NORMAL and bacterial at 224×224, viral at 227×227) and 60 training
    images, so that both sizes form geometry groups."""
    rows = [{"relpath": f"test/{label}/{name}", "label": label,
             "width": 227 if "virus" in name else 224, "height": 227 if "virus" in name else 224}
            for label, name in TEST_FILES]
    rows += [{"relpath": f"train/NORMAL/t{k}.jpeg", "label": "NORMAL", "width": 224 + 3 * (k % 2),
              "height": 224 + 3 * (k % 2)} for k in range(60)]
    frame = pd.DataFrame(rows)
    return frame.assign(target=(frame["label"] == "PNEUMONIA").astype(int))
