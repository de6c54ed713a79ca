"""Find the Kaggle-layout chest X-ray folder, or download it into `data/` (Kaggle, then Mendeley)."""
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from cxrlib.contract import CLASS_NAMES, DATA_ENV_VAR, DEFAULT_DATA_DIR, REQUIRED_SPLITS, SHARED_DATA_DIR, SPLITS
KAGGLE_HANDLE = "paultimothymooney/chest-xray-pneumonia"
# ChestXRay2017.zip of Kermany et al. (Mendeley Data doi:10.17632/rscbjbr9sj.2): train/test only, no val.
MENDELEY_URL = (
    "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
    "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"
)
EXPECTED_LAYOUT = "{train,val,test}/{NORMAL,PNEUMONIA}/<images>"
SKIPPED_DIRS = {"__MACOSX"}


class DataNotFoundError(FileNotFoundError):
    """The data set is neither where it was asked to be nor downloadable."""


class DataLayoutError(ValueError):
    """A folder exists but is not (or not completely) in the Kaggle layout."""


def _where_to_put_data(dest: Path) -> str:
    """The fix shown whenever the data cannot be found or fetched."""
    return (
        f"Put the Kaggle 'chest-xray-pneumonia' folder ({EXPECTED_LAYOUT}) at {dest}, "
        f"or point {DATA_ENV_VAR}=/path/to/chest_xray (or pass data_dir=...) at an existing copy. "
        f"Sources: https://www.kaggle.com/datasets/{KAGGLE_HANDLE} or {MENDELEY_URL}"
    )


def describe_folder(path: Path) -> str:
    """The visible entries of a folder, for error messages."""
    names = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    return ", ".join(names[:20]) + (f", ... ({len(names)} entries)" if len(names) > 20 else "") or "nothing"


def _is_kaggle_root(path: Path) -> bool:
    """Holds at least one split folder; scan_dataset then names any split or class that is missing."""
    return any((path / split).is_dir() for split in SPLITS)


def find_kaggle_root(path: str | Path, max_depth: int = 3) -> Path:
    """The shallowest folder under `path` holding split folders, skipping __MACOSX and hidden folders.

    Accepts the archive's outer folder; the nested duplicate `chest_xray/chest_xray` is deeper, so it is
    never chosen over the real tree.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataNotFoundError(f"Data folder {path} does not exist. {_where_to_put_data(path)}")
    if not path.is_dir():
        raise DataLayoutError(f"{path} is a file, expected a folder laid out as {EXPECTED_LAYOUT}.")
    level = [path]
    for _ in range(max_depth + 1):
        for folder in level:
            if _is_kaggle_root(folder):
                return folder.resolve()
        level = [
            child
            for folder in level
            for child in sorted(folder.iterdir())
            if child.is_dir() and child.name not in SKIPPED_DIRS and not child.name.startswith(".")
        ]
    raise DataLayoutError(
        f"{path} is not in the Kaggle layout: expected {EXPECTED_LAYOUT} (here or in a subfolder), "
        f"found: {describe_folder(path)}."
    )


def locate_data(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The data root: explicit `data_dir` > $CXR_DATA_DIR > <repo>/data/chest_xray > the shared copy beside the
    repository (../shared/data/chest_xray) > a download into <repo>/data/chest_xray.

    Every way of starting a notebook (run_all.sh, papermill, JupyterLab) finds the same copy this way.
    """
    requested = data_dir if data_dir is not None else os.environ.get(DATA_ENV_VAR) or None
    if requested is not None:
        return find_kaggle_root(requested)
    for candidate in (DEFAULT_DATA_DIR, SHARED_DATA_DIR):
        if candidate.exists():
            return find_kaggle_root(candidate)
    if not download:
        raise DataNotFoundError(f"No data at {DEFAULT_DATA_DIR}. {_where_to_put_data(DEFAULT_DATA_DIR)}")
    return download_dataset(DEFAULT_DATA_DIR)


def download_dataset(dest: str | Path = DEFAULT_DATA_DIR, url: str = MENDELEY_URL, use_kaggle: bool = True) -> Path:
    """Fetch the data set into `dest` with kagglehub, falling back to the zip at `url`."""
    dest = Path(dest)
    errors = []
    if use_kaggle:
        try:
            return download_from_kaggle(dest)
        except Exception as error:  # kagglehub raises many types (HTTP, auth, offline); try the fallback
            errors.append(f"Kaggle ({KAGGLE_HANDLE}): {type(error).__name__}: {error}")
    try:
        return download_and_extract(url, dest)
    except (urllib.error.URLError, OSError, zipfile.BadZipFile, DataLayoutError) as error:
        errors.append(f"{url}: {type(error).__name__}: {error}")
    raise DataNotFoundError(
        "Could not download the chest X-ray data (offline?).\n  " + "\n  ".join(errors) + "\n" + _where_to_put_data(dest)
    )


def download_from_kaggle(dest: Path) -> Path:
    """Download with kagglehub into a temporary folder beside `dest`, then move the real tree into place."""
    import kagglehub

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-kaggle-") as staging:
        kagglehub.dataset_download(KAGGLE_HANDLE, output_dir=staging)
        return _install_tree(Path(staging), dest)


def download_and_extract(url: str, dest: str | Path) -> Path:
    """Stream the zip at `url` with a progress bar, extract it beside `dest`, move the real tree to `dest`.

    Everything happens in a temporary folder on the same file system and ends in one rename, so an
    interrupted download never leaves a partial tree at `dest`.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it first to download again.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-download-") as staging:
        archive = Path(staging) / "archive.zip"
        _fetch(url, archive)
        extracted = Path(staging) / "extracted"
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(extracted)
        return _install_tree(extracted, dest)


def _fetch(url: str, target: Path, chunk_bytes: int = 1 << 20) -> None:
    """Copy `url` to `target` showing bytes received (total from Content-Length when the server gives it)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {target.name}") as progress:
            while chunk := response.read(chunk_bytes):
                out.write(chunk)
                progress.update(len(chunk))


def _install_tree(extracted: Path, dest: Path) -> Path:
    """Move the real Kaggle tree found inside `extracted` to `dest` in one rename."""
    root = find_kaggle_root(extracted)
    for split in REQUIRED_SPLITS:
        for label in CLASS_NAMES:
            if not (root / split / label).is_dir():
                raise DataLayoutError(f"The download has no {split}/{label} folder (found in {root}: {describe_folder(root)}).")
    os.replace(root, dest)
    _drop_nested_copies(dest)
    return dest


def _drop_nested_copies(dest: Path) -> None:
    """Remove the archive's duplicate `chest_xray/` and `__MACOSX/` folders left inside the installed tree."""
    for child in dest.iterdir():
        if child.is_dir() and (child.name in SKIPPED_DIRS or child.name == dest.name or _is_kaggle_root(child)):
            shutil.rmtree(child)
