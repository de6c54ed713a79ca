"""Index the Kaggle tree into the image table of the data contract (see docs/ARCHITECTURE.md)."""
import hashlib
import io
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from cxrlib.contract import CLASS_NAMES, REQUIRED_SPLITS, SPLITS, targets_of

from .locate import EXPECTED_LAYOUT, DataLayoutError, describe_folder, find_kaggle_root

IMAGE_EXTENSIONS = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff"}


def relpath_from_path(path: str) -> str:
    """The ``relpath`` (``split/label/file``) of any path to an image of the tree, POSIX or Windows, from any
    machine: predictions.csv may hold another machine's absolute paths; the last three parts identify the image."""
    return "/".join(re.split(r"[\\/]+", str(path))[-3:])


def require_columns(frame: pd.DataFrame, columns, what: str) -> None:
    """Raise a ValueError naming the columns ``what`` needs but ``frame`` lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing} but got {list(frame.columns)}; pass "
                         "DatasetIndex.images from cxrlib.data.scan_dataset (or predictions.csv rows).")


IMAGE_COLUMNS = ["path", "relpath", "split", "label", "target", "patient_id", "patient_key", "width", "height", "sha256"]
# Order matters: the first pattern that matches the file stem gives the patient id.
PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-\d+", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-\d+", re.IGNORECASE),
)


@dataclass(frozen=True)
class DatasetIndex:
    """Everything known about one copy of the data set: usable images, excluded files, duplicates."""

    root: Path
    images: pd.DataFrame
    excluded: pd.DataFrame
    duplicates: pd.DataFrame
    fingerprint: str


def patient_id_from_name(name: str) -> str | None:
    """`person12_virus_3.jpeg` -> `person12`, `IM-0115-0001.jpeg` -> `IM-0115`; None for unknown forms."""
    stem = Path(name).stem
    for pattern in PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return None


def patient_ids(names: pd.Series) -> pd.Series:
    """Patient ids for file names; unknown forms fall back to the file stem (one image, one patient)."""
    parsed = names.map(patient_id_from_name)
    unknown = parsed.isna()
    if unknown.any():
        examples = ", ".join(names[unknown].head(3))
        warnings.warn(
            f"{unknown.sum()} file name(s) match no known patient naming form (e.g. {examples}); "
            "each is treated as its own patient, so patient grouping cannot protect them from leakage.",
            stacklevel=2,
        )
    return parsed.fillna(names.map(lambda name: Path(name).stem))


def _class_folders(root: Path, splits: tuple[str, ...] = SPLITS) -> list[tuple[str, str, Path]]:
    """(split, label, folder) for every class folder of `splits`; clear errors for missing splits or classes."""
    missing = [split for split in REQUIRED_SPLITS if split in splits and not (root / split).is_dir()]
    if missing:
        raise DataLayoutError(
            f"{root} has no {'/'.join(missing)} folder (found: {describe_folder(root)}); expected {EXPECTED_LAYOUT}."
        )
    present = [split for split in splits if (root / split).is_dir()]
    if "val" in splits and "val" not in present:
        warnings.warn(f"{root} has no val/ folder (the Mendeley release has none); official_val will be empty.")
    folders = []
    for split in present:
        for label in CLASS_NAMES:
            folder = root / split / label
            if not folder.is_dir():
                raise DataLayoutError(
                    f"{root / split} has no {label} folder (found: {describe_folder(root / split)}); "
                    f"expected {EXPECTED_LAYOUT}."
                )
            folders.append((split, label, folder))
    return folders


def _list_files(folders: list[tuple[str, str, Path]]) -> tuple[list[tuple[str, str, Path]], list[Path]]:
    """Candidate image files per class folder and the non-image files in them (hidden files are skipped)."""
    candidates, not_images = [], []
    for split, label, folder in folders:
        entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name)
        is_image = [entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS for entry in entries]
        if not any(is_image):
            found = ", ".join(entry.name for entry in entries[:5]) or "it is empty"
            raise DataLayoutError(
                f"{folder} contains no images ({found}); expected JPEG/PNG chest X-rays. "
                "Re-download the data set or restore this folder."
            )
        for entry, image in zip(entries, is_image):
            if image:
                candidates.append((split, label, Path(entry.path)))
            else:
                not_images.append(Path(entry.path))
    return candidates, not_images


def read_image_facts(path: Path) -> dict:
    """Width, height and sha256 of one file, or the reason it cannot be used (decodes fully to catch truncation)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return {"reason": f"unreadable: {error.strerror or error}"}
    if not data:
        return {"reason": "zero-byte file"}
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            image.load()
    except Image.UnidentifiedImageError:  # its message holds the in-memory buffer's repr, not the file
        return {"reason": "corrupt: not an image format PIL can identify"}
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError ...
        kind = "truncated" if "truncat" in str(error).lower() else "corrupt"
        return {"reason": f"{kind}: {error}"}
    return {"width": width, "height": height, "sha256": hashlib.sha256(data).hexdigest()}


def _read_all(paths: list[Path]) -> list[dict]:
    """read_image_facts over many files; PIL and hashlib release the GIL, so threads help."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        return list(pool.map(read_image_facts, paths))


def _warn_skipped(root: Path, not_images: list[Path], unreadable: pd.DataFrame) -> None:
    """One warning naming the files that were left out of the index."""
    if not_images:
        names = ", ".join(str(path.relative_to(root)) for path in not_images[:10])
        warnings.warn(f"Skipped {len(not_images)} non-image file(s) in class folders: {names}", stacklevel=3)
    if len(unreadable):
        names = ", ".join(f"{Path(row.path).relative_to(root)} ({row.reason})" for row in unreadable.head(10).itertuples())
        warnings.warn(f"Excluded {len(unreadable)} unreadable image(s) (see .excluded): {names}", stacklevel=3)


def _fingerprint(images: pd.DataFrame) -> str:
    """sha256 over sorted relative paths and file hashes: equal fingerprints mean identical data."""
    digest = hashlib.sha256()
    for relpath, sha256 in sorted(zip(images["relpath"], images["sha256"])):
        digest.update(f"{relpath}\t{sha256}\n".encode())
    return digest.hexdigest()


def _duplicates(images: pd.DataFrame) -> pd.DataFrame:
    """Byte-identical groups of two or more images."""
    repeated = images[images.duplicated("sha256", keep=False)]
    return repeated[["sha256", "path", "split", "label"]].sort_values(["sha256", "path"]).reset_index(drop=True)


def _check_every_class_readable(images: pd.DataFrame, folders: list[tuple[str, str, Path]]) -> None:
    present = set(zip(images["split"], images["label"]))
    for split, label, folder in folders:
        if (split, label) not in present:
            raise DataLayoutError(f"{folder} has no readable images (all excluded; see the warning above).")


def scan_dataset(root: str | Path, splits: tuple[str, ...] = SPLITS) -> DatasetIndex:
    """Index `root` (the Kaggle tree, or a folder containing it): one row per readable image of `splits`.

    Folders of other splits are never listed or opened: `splits=("train",)` indexes a search's data without
    reading a single test file.
    """
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise ValueError(f"splits={splits!r}: expected a non-empty tuple of {', '.join(SPLITS)}")
    root = find_kaggle_root(root)
    folders = _class_folders(root, tuple(splits))
    candidates, not_images = _list_files(folders)
    facts = _read_all([path for _, _, path in candidates])
    rows = [
        {"path": str(path), "relpath": path.relative_to(root).as_posix(), "split": split, "label": label, **fact}
        for (split, label, path), fact in zip(candidates, facts)
    ]
    table = pd.DataFrame(rows)
    if "reason" not in table:
        table["reason"] = None
    unreadable = table[table["reason"].notna()][["path", "reason"]]
    excluded = pd.concat(
        [pd.DataFrame({"path": [str(path) for path in not_images], "reason": "not an image"}), unreadable]
    ).sort_values("path").reset_index(drop=True)
    _warn_skipped(root, not_images, unreadable)

    images = table[table["reason"].isna()].drop(columns="reason")
    images = images.sort_values(["split", "label", "path"]).reset_index(drop=True)
    _check_every_class_readable(images, folders)
    images["target"] = targets_of(images["label"])
    images["patient_id"] = patient_ids(images["path"].map(lambda path: Path(path).name))
    images["patient_key"] = images["split"] + "/" + images["patient_id"]
    images = images.astype({"width": int, "height": int})[IMAGE_COLUMNS]
    return DatasetIndex(root, images, excluded, _duplicates(images), _fingerprint(images))
