"""The test images two models fail on across replicates: both wrong, and the largest gaps between them."""
import dataclasses

import pytest

from cxrlib import compare
from reader_fakes import fake_run, RESNET, study_runs


@pytest.fixture
def table():
    return compare.image_failures(study_runs(), "resnet50", "densenet121")


def test_each_image_has_both_models_scores_across_replicates(table):
    assert len(table) == 12 and set(table["replicates"]) == {3}
    last = table.set_index("path").loc["test/PNEUMONIA/person8_virus_18.jpeg"]
    assert last["densenet121_min"] == 0.45 and last["densenet121_max"] == 0.9
    assert last["densenet121_mean"] == pytest.approx(0.75) and last["densenet121_wrong"] == 1
    assert last["resnet50_wrong"] == 0 and last["both_wrong"] == 0
    assert last["score_gap"] == pytest.approx(0.75 - 0.8)


def test_both_wrong_puts_the_images_wrong_in_most_replicates_first(table):
    chosen = compare.both_wrong(table, 5)
    assert chosen["path"].tolist() == ["test/PNEUMONIA/person5_virus_15.jpeg"]
    assert chosen["both_wrong"].tolist() == [3]


def test_most_disagreed_takes_the_largest_gaps_either_way(table):
    chosen = compare.most_disagreed(table, 2)
    assert set(chosen["path"]) == {"test/NORMAL/IM-0004-0001.jpeg", "test/PNEUMONIA/person6_virus_16.jpeg"}


def test_the_models_must_share_their_replicates():
    with pytest.raises(ValueError, match=r"'resnet50' and 'densenet121' for the same seeds; got seeds \[1, 2, 3\] "
                                         r"and \[1, 2\]"):
        compare.replicate_pairs(study_runs()[:-1], "resnet50", "densenet121")


def test_the_models_must_share_their_test_images():
    runs = study_runs(seeds=(1,))
    fewer = runs[1].predictions.iloc[:-1]
    runs[1] = dataclasses.replace(runs[1], predictions=fewer)
    with pytest.raises(ValueError, match="seed 1: resnet50 and densenet121 were tested on different images"):
        compare.replicate_pairs(runs, "resnet50", "densenet121")


def test_a_model_without_runs_is_named():
    with pytest.raises(ValueError, match="'resnet50' and 'vgg16'"):
        compare.replicate_pairs([fake_run("resnet50", 1, RESNET)], "resnet50", "vgg16")
