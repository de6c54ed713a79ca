"""Notebook 01's sections (cxrlib.report.exploration): one call per cell, each showing and returning what the
notebook's closing summary is made from."""
import pandas as pd
import pytest

from cxrlib.report import exploration


def test_the_class_balance_sentence_states_both_folders_shares():
    per_split = pd.DataFrame({"PNEUMONIA share": [0.742, 0.625]}, index=["train", "test"])
    text = exploration.class_balance_sentence(per_split)
    assert text.startswith("PNEUMONIA makes up **74.2%** of the training folder and **62.5%** of the test folder")
    assert "would already score **62.5%** accuracy on test" in text


@pytest.fixture
def shown(monkeypatch):
    """What the sections display, in order."""
    items = []
    monkeypatch.setattr(exploration, "display", lambda *objects: items.extend(objects))
    return items


def test_every_section_runs_on_a_generated_tree_and_the_summary_uses_their_numbers(image_tree, shown, capsys):
    namespace = {"profile": "interactive", "data_dir": str(image_tree), "subsample_per_class": None,
                 "val_fraction": 0.25, "seeds": [1, 2], "split_seed": None, "n_examples": 1, "sampling_seed": 42}
    setup = exploration.setup(namespace)
    printed = capsys.readouterr().out
    assert f"fingerprint: {setup.index.fingerprint}" in printed and "parameters: profile=interactive" in printed
    per_split = exploration.folders_section(setup)
    assert per_split.loc["train", "PNEUMONIA share"] == pytest.approx(0.5)  # 12 images of each class
    several = exploration.patients_section(setup)
    assert several == pytest.approx(1.0)  # the generated tree gives every patient two images
    splits = exploration.replicate_splits_section(setup)
    assert sorted(splits) == [1, 2]
    for section in (exploration.image_sizes_section, exploration.label_rates_section, exploration.samples_section,
                    exploration.intensity_section):
        section(setup)
    baseline = exploration.metadata_baseline_section(setup)
    black = exploration.black_pixels_section(setup)
    duplicates = exploration.duplicates_section(setup, splits)
    summary = exploration.implications(per_split, several, splits, duplicates, baseline, black)
    assert "PNEUMONIA is 50.0% of the training images" in summary and "100.0% of patients have several" in summary
    assert f"{duplicates['across_subsets']} duplicate groups cross the training/validation boundary" in summary
    assert "(0 of them also in training)" in summary  # whole patients on one side in every split
    assert len(shown) > 10
