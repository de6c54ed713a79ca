"""Finding the data (argument > CXR_DATA_DIR > data/chest_xray) and downloading it from a local HTTP server."""
import functools
import http.server
import shutil
import threading
import urllib.error
import zipfile
from pathlib import Path

import pytest

from cxrlib.data import locate, scan_dataset
from cxrlib.data.locate import DataLayoutError, DataNotFoundError, download_and_extract, find_kaggle_root, locate_data
from helpers import write_tree

SMALL = {"train": 4, "val": 2, "test": 2}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """A folder served by http.server on 127.0.0.1 in a thread; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def kaggle_archive_tree(root: Path) -> Path:
    """The Kaggle zip's quirks: outer chest_xray/ with a nested duplicate copy and __MACOSX resource forks."""
    outer = write_tree(root / "chest_xray", SMALL)
    shutil.copytree(outer, root / "chest_xray" / "chest_xray", ignore=shutil.ignore_patterns("chest_xray"))
    fork_dir = root / "__MACOSX" / "chest_xray" / "train" / "NORMAL"
    fork_dir.mkdir(parents=True)
    (fork_dir / "._IM-0001-0001.jpeg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    return root


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, path.relative_to(folder).as_posix())
    return archive


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_find_kaggle_root_accepts_the_tree_itself(image_tree):
    assert find_kaggle_root(image_tree) == image_tree.resolve()


def test_find_kaggle_root_prefers_the_outer_tree_over_nested_copy_and_macosx(tmp_path):
    kaggle_archive_tree(tmp_path / "unzipped")
    assert find_kaggle_root(tmp_path / "unzipped") == (tmp_path / "unzipped" / "chest_xray").resolve()
    assert find_kaggle_root(tmp_path / "unzipped" / "chest_xray") == (tmp_path / "unzipped" / "chest_xray").resolve()


def test_find_kaggle_root_ignores_a_tree_that_only_exists_under_macosx(tmp_path):
    write_tree(tmp_path / "__MACOSX" / "chest_xray", SMALL)
    with pytest.raises(DataLayoutError, match="not in the Kaggle layout"):
        find_kaggle_root(tmp_path)


def test_missing_path_says_where_to_put_the_data(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist") as error:
        find_kaggle_root(tmp_path / "nowhere")
    assert "CXR_DATA_DIR" in str(error.value)


def test_folder_not_in_kaggle_layout_lists_what_was_found(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("a,b\n")
    with pytest.raises(DataLayoutError) as error:
        find_kaggle_root(tmp_path)
    message = str(error.value)
    assert "images, labels.csv" in message and "{train,val,test}/{NORMAL,PNEUMONIA}" in message


def test_a_file_is_not_a_data_folder(tmp_path):
    (tmp_path / "chest_xray.zip").write_bytes(b"PK")
    with pytest.raises(DataLayoutError, match="is a file"):
        find_kaggle_root(tmp_path / "chest_xray.zip")


def test_locate_prefers_argument_then_env_then_default_then_the_shared_copy(tmp_path, monkeypatch):
    explicit, from_env, default, shared = (write_tree(tmp_path / name, SMALL)
                                           for name in ("explicit", "env", "default", "shared"))
    monkeypatch.setattr(locate, "DEFAULT_DATA_DIR", default)
    monkeypatch.setattr(locate, "SHARED_DATA_DIR", shared)
    monkeypatch.setenv("CXR_DATA_DIR", str(from_env))
    assert locate_data(explicit) == explicit.resolve()
    assert locate_data() == from_env.resolve()
    monkeypatch.delenv("CXR_DATA_DIR")
    assert locate_data() == default.resolve()
    monkeypatch.setattr(locate, "DEFAULT_DATA_DIR", tmp_path / "absent")
    assert locate_data() == shared.resolve()


def test_locate_does_not_download_when_env_points_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_DATA_DIR", str(tmp_path / "typo"))
    monkeypatch.setattr(locate, "download_dataset", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(DataNotFoundError, match="typo"):
        locate_data()


def test_locate_downloads_into_default_when_nothing_exists(tmp_path, monkeypatch):
    default = tmp_path / "data" / "chest_xray"
    monkeypatch.delenv("CXR_DATA_DIR", raising=False)
    monkeypatch.setattr(locate, "DEFAULT_DATA_DIR", default)
    monkeypatch.setattr(locate, "SHARED_DATA_DIR", tmp_path / "no-shared-copy")
    monkeypatch.setattr(locate, "download_dataset", lambda dest: write_tree(dest, SMALL))
    assert locate_data() == default
    monkeypatch.setattr(locate, "DEFAULT_DATA_DIR", tmp_path / "elsewhere")
    with pytest.raises(DataNotFoundError, match="CXR_DATA_DIR"):
        locate_data(download=False)


def test_download_extracts_the_one_real_tree_with_a_progress_bar(tmp_path, http_root, capsys):
    served, base_url = http_root
    zip_folder(kaggle_archive_tree(tmp_path / "archive"), served / "chest-xray-pneumonia.zip")
    dest = tmp_path / "data" / "chest_xray"

    assert download_and_extract(f"{base_url}/chest-xray-pneumonia.zip", dest) == dest
    assert "Downloading" in capsys.readouterr().err
    assert leftovers(dest) == ["test", "train", "val"]
    assert leftovers(dest.parent) == ["chest_xray"]
    assert len(scan_dataset(dest).images) == 2 * sum(SMALL.values())


def test_download_of_a_mendeley_style_zip_without_outer_folder(tmp_path, http_root):
    served, base_url = http_root
    zip_folder(write_tree(tmp_path / "flat", {"train": 2, "test": 2}), served / "ChestXRay2017.zip")
    dest = tmp_path / "data" / "chest_xray"
    download_and_extract(f"{base_url}/ChestXRay2017.zip", dest)
    assert leftovers(dest) == ["test", "train"]


@pytest.mark.parametrize(
    "content, error", [(b"this is not a zip", zipfile.BadZipFile), (None, urllib.error.HTTPError)], ids=["bad-zip", "404"]
)
def test_failed_download_leaves_nothing_that_looks_valid(tmp_path, http_root, content, error):
    served, base_url = http_root
    if content is not None:
        (served / "broken.zip").write_bytes(content)
    dest = tmp_path / "data" / "chest_xray"
    with pytest.raises(error):
        download_and_extract(f"{base_url}/broken.zip", dest)
    assert leftovers(dest.parent) == []


def test_zip_without_kaggle_layout_is_rejected_and_cleaned_up(tmp_path, http_root):
    served, base_url = http_root
    (tmp_path / "other" / "images").mkdir(parents=True)
    (tmp_path / "other" / "images" / "a.txt").write_text("x")
    zip_folder(tmp_path / "other", served / "other.zip")
    dest = tmp_path / "data" / "chest_xray"
    with pytest.raises(DataLayoutError, match="not in the Kaggle layout"):
        download_and_extract(f"{base_url}/other.zip", dest)
    assert leftovers(dest.parent) == []


def test_download_refuses_to_overwrite(image_tree):
    with pytest.raises(FileExistsError, match="remove it first"):
        download_and_extract("http://127.0.0.1:9/unused.zip", image_tree)


def test_offline_download_explains_where_to_put_the_data(tmp_path, monkeypatch):
    import kagglehub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    dest = tmp_path / "data" / "chest_xray"
    with pytest.raises(DataNotFoundError) as error:
        locate.download_dataset(dest, url="http://127.0.0.1:9/closed-port.zip")
    message = str(error.value)
    assert "api.kaggle.com" in message and "closed-port.zip" in message
    assert str(dest) in message and "CXR_DATA_DIR" in message
    assert leftovers(dest.parent) == []


def test_kaggle_download_is_moved_into_place(tmp_path, monkeypatch):
    import kagglehub

    def fake_kaggle(handle, output_dir):
        assert handle == "paultimothymooney/chest-xray-pneumonia"
        kaggle_archive_tree(Path(output_dir))

    monkeypatch.setattr(kagglehub, "dataset_download", fake_kaggle)
    dest = tmp_path / "data" / "chest_xray"
    assert locate.download_dataset(dest, url="http://127.0.0.1:9/unused.zip") == dest
    assert leftovers(dest) == ["test", "train", "val"]
    assert leftovers(dest.parent) == ["chest_xray"]
