"""scan_dataset on tiny generated trees: the contract's columns, patient ids, archive quirks, bad files, errors."""
import hashlib
import shutil
import warnings

import pytest

from cxrlib.data.index import IMAGE_COLUMNS, patient_id_from_name, patient_ids, relpath_from_path, scan_dataset
from cxrlib.data.locate import DataLayoutError, DataNotFoundError
from helpers import write_odd_images, write_tree

SMALL = {"train": 4, "val": 2, "test": 2}


def scan_quietly(root):
    """scan_dataset, failing the test on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return scan_dataset(root)


def test_index_has_the_contract_columns_and_values(image_tree):
    index = scan_quietly(image_tree)
    images = index.images
    assert list(images.columns) == IMAGE_COLUMNS
    assert index.root == image_tree.resolve()
    assert images.groupby(["split", "label"]).size().to_dict() == {
        (split, label): count
        for split, count in {"train": 12, "val": 2, "test": 4}.items()
        for label in ("NORMAL", "PNEUMONIA")
    }
    assert images.equals(images.sort_values(["split", "label", "path"]).reset_index(drop=True))
    assert (images["target"] == (images["label"] == "PNEUMONIA")).all()
    assert (images["patient_key"] == images["split"] + "/" + images["patient_id"]).all()
    assert set(images["width"]) == {44} and set(images["height"]) == {40}
    first = images.iloc[0]
    assert first["relpath"] == "test/NORMAL/IM-0001-0001.jpeg"
    assert first["path"] == str(image_tree.resolve() / first["relpath"])
    assert first["sha256"] == hashlib.sha256((image_tree / first["relpath"]).read_bytes()).hexdigest()
    assert index.excluded.empty and index.duplicates.empty


def test_patient_numbering_restarts_per_split_so_keys_differ(image_tree):
    images = scan_quietly(image_tree).images
    person1 = images[images["patient_id"] == "person1"]
    assert set(person1["split"]) == {"train", "val", "test"}
    assert person1["patient_key"].nunique() == 3


def test_fingerprint_is_stable_and_changes_with_any_file(image_tree):
    before = scan_quietly(image_tree).fingerprint
    assert scan_quietly(image_tree).fingerprint == before
    victim = image_tree / "train" / "NORMAL" / "IM-0001-0001.jpeg"
    victim.write_bytes(victim.read_bytes() + b"\x00")
    assert scan_quietly(image_tree).fingerprint != before


@pytest.mark.parametrize(
    "name, patient_id",
    [
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1946_bacteria_4874.jpeg", "person1946"),
        ("person12_virus_34.JPEG", "person12"),
        ("PERSON3_Virus_2.jpg", "PERSON3"),
        ("person1_virus_6_copy.png", "person1"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0011-0001-0002.jpeg", "IM-0011"),
        ("im-0011-0001.JPG", "im-0011"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("NORMAL2-IM-0173-0001-0001.png", "NORMAL2-IM-0173"),
        ("scan_0001.png", None),
        ("person_bacteria_1.jpeg", None),
        ("IM-0115.jpeg", None),
    ],
)
def test_patient_id_naming_forms(name, patient_id):
    assert patient_id_from_name(name) == patient_id


def test_unknown_names_fall_back_to_the_stem_with_one_warning():
    import pandas as pd

    names = pd.Series(["scan_a.png", "IM-0001-0001.jpeg", "scan_b.jpeg"])
    with pytest.warns(UserWarning, match=r"^2 file name\(s\) match no known") as caught:
        ids = patient_ids(names)
    assert len(caught) == 1
    assert ids.tolist() == ["scan_a", "IM-0001", "scan_b"]


def test_archive_quirks_do_not_change_the_count(tmp_path):
    outer = write_tree(tmp_path / "chest_xray", SMALL)
    plain_count = len(scan_quietly(outer).images)
    shutil.copytree(outer, outer / "chest_xray")
    fork = outer / "__MACOSX" / "train" / "NORMAL"
    fork.mkdir(parents=True)
    (fork / "._IM-0001-0001.jpeg").write_bytes(b"\x00\x05\x16\x07")
    (outer / "train" / "NORMAL" / "._IM-0001-0001.jpeg").write_bytes(b"\x00\x05\x16\x07")
    (outer / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\x00")
    (outer / "MANIFEST.csv").write_text("split,label,filename\n")

    assert len(scan_quietly(outer).images) == plain_count
    assert len(scan_quietly(tmp_path).images) == plain_count  # pointed at the folder holding the archive


def test_odd_but_readable_formats_are_indexed(image_tree):
    modes = write_odd_images(image_tree / "train" / "NORMAL")
    images = scan_quietly(image_tree).images
    odd = images[images["path"].str.contains("IM-09")]
    assert sorted(odd["relpath"].str.split("/").str[-1]) == sorted(modes)
    assert set(odd["patient_id"]) == {"IM-0901", "IM-0902", "IM-0903", "IM-0904"}
    assert set(zip(odd["width"], odd["height"])) == {(46, 36)}


def test_broken_files_are_excluded_with_reasons(image_tree):
    folder = image_tree / "train" / "PNEUMONIA"
    good = (folder / "person1_virus_0.jpeg").read_bytes()
    (folder / "person90_virus_1.jpeg").write_bytes(b"")
    (folder / "person91_virus_1.jpeg").write_bytes(good[: len(good) // 2])
    (folder / "person92_virus_1.jpeg").write_text("<html>404 Not Found</html>")
    (folder / "notes.txt").write_text("reader comments")
    with pytest.warns(UserWarning) as caught:
        index = scan_dataset(image_tree)
    messages = " ".join(str(w.message) for w in caught)
    assert "train/PNEUMONIA/notes.txt" in messages and "person91_virus_1.jpeg" in messages

    reasons = dict(zip(index.excluded["path"].str.split("/").str[-1], index.excluded["reason"]))
    assert reasons["person90_virus_1.jpeg"] == "zero-byte file"
    assert reasons["person91_virus_1.jpeg"].startswith("truncated")
    assert reasons["person92_virus_1.jpeg"].startswith("corrupt")
    assert reasons["notes.txt"] == "not an image"
    assert list(index.excluded.columns) == ["path", "reason"]
    assert not index.images["path"].str.contains("person9[012]|notes").any()
    assert len(index.images) == 36


def test_byte_identical_files_are_reported_as_duplicates(image_tree):
    folder = image_tree / "test" / "NORMAL"
    shutil.copy(folder / "IM-0001-0001.jpeg", folder / "IM-0777-0001.jpeg")
    index = scan_quietly(image_tree)
    assert list(index.duplicates.columns) == ["sha256", "path", "split", "label"]
    assert len(index.duplicates) == 2 and index.duplicates["sha256"].nunique() == 1
    assert index.duplicates["path"].str.endswith(("IM-0001-0001.jpeg", "IM-0777-0001.jpeg")).all()


def test_missing_official_val_only_warns(tmp_path):
    root = write_tree(tmp_path / "chest_xray", {"train": 4, "test": 2})
    with pytest.warns(UserWarning, match="no val/ folder"):
        images = scan_dataset(root).images
    assert set(images["split"]) == {"train", "test"}


def test_missing_split_is_an_error_naming_what_was_found(image_tree):
    shutil.rmtree(image_tree / "test")
    with pytest.raises(DataLayoutError, match=r"has no test folder \(found: train, val\)"):
        scan_dataset(image_tree)


def test_missing_class_folder_is_an_error(image_tree):
    shutil.rmtree(image_tree / "val" / "PNEUMONIA")
    with pytest.raises(DataLayoutError, match=r"val has no PNEUMONIA folder \(found: NORMAL\)"):
        scan_dataset(image_tree)


def test_empty_class_folder_is_an_error_naming_it(image_tree):
    folder = image_tree / "test" / "NORMAL"
    shutil.rmtree(folder)
    folder.mkdir()
    with pytest.raises(DataLayoutError, match=r"test/NORMAL contains no images \(it is empty\)"):
        scan_dataset(image_tree)


def test_class_folder_of_only_broken_images_is_an_error(image_tree):
    for path in (image_tree / "val" / "NORMAL").iterdir():
        path.write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(DataLayoutError, match="val/NORMAL has no readable images"):
        scan_dataset(image_tree)


def test_folder_outside_the_kaggle_layout_is_an_error(tmp_path):
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "PNEUMONIA").mkdir()
    with pytest.raises(DataLayoutError, match=r"expected \{train,val,test\}/\{NORMAL,PNEUMONIA\}.*found: NORMAL, PNEUMONIA"):
        scan_dataset(tmp_path)


def test_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        scan_dataset(tmp_path / "chest_xray")


def test_importing_the_data_package_does_not_load_tensorflow():
    import subprocess
    import sys

    code = "import sys; from cxrlib import data; assert 'make_dataset' in data.__all__; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_relpath_from_path_keeps_split_label_and_file():
    assert relpath_from_path("/a/b/chest_xray/test/NORMAL/x.jpeg") == "test/NORMAL/x.jpeg"
    assert relpath_from_path("D:\\data\\test\\PNEUMONIA\\y.jpeg") == "test/PNEUMONIA/y.jpeg"
