"""Subgroups from file names: NORMAL, bacterial and viral pneumonia, per run, across replicates and paired."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cxrlib import compare
from reader_fakes import DENSENET, RESNET, fake_run, index_images, study_runs


def test_the_file_name_states_the_subtype_of_a_pneumonia_image():
    assert compare.subgroup_of("test/PNEUMONIA/person1_bacteria_1.jpeg", "PNEUMONIA") == "bacterial"
    assert compare.subgroup_of(r"C:\data\test\PNEUMONIA\person10_VIRUS_35.jpeg", "PNEUMONIA") == "viral"
    assert compare.subgroup_of("test/NORMAL/IM-0001-0001.jpeg", "NORMAL") == "NORMAL"


def test_a_pneumonia_file_without_its_subtype_is_refused_by_name():
    with pytest.raises(ValueError, match=r"test/PNEUMONIA/scan_7\.jpeg.*person<N>_bacteria_<M>.*original file names"):
        compare.subgroup_of("test/PNEUMONIA/scan_7.jpeg", "PNEUMONIA")


def test_each_run_counts_its_correct_images_per_subgroup():
    rows = compare.subgroup_rows([fake_run("resnet50", 1, RESNET), fake_run("densenet121", 1, DENSENET)])
    shares = rows.set_index(["model", "subgroup"])["share_correct"]
    assert shares[("resnet50", "NORMAL")] == 0.75 and shares[("resnet50", "bacterial")] == 1.0
    assert shares[("resnet50", "viral")] == 0.5 and shares[("densenet121", "viral")] == 0.75
    assert set(rows["group"]) == {"all"} and set(rows["images"]) == {4}


def test_with_the_data_index_each_subgroup_is_also_split_by_stored_size():
    rows = compare.subgroup_rows([fake_run("resnet50", 1, RESNET)], index_images())
    counts = rows.set_index(["subgroup", "group"])["images"]
    assert counts[("viral", "square 227×227")] == 4 and counts[("bacterial", "square 224×224")] == 4
    assert counts[("viral", "all")] == 4 and ("viral", "square 224×224") not in counts


def test_across_replicates_a_subgroup_below_the_readable_size_is_marked():
    rows = compare.subgroup_rows(study_runs())
    summary = compare.summarise_subgroups(rows).set_index(["model", "subgroup"])
    viral = summary.loc[("densenet121", "viral")]
    assert viral["replicates"] == 3 and viral["mean"] == pytest.approx((0.75 + 0.75 + 0.5) / 3)
    assert viral["min"] == 0.5 and viral["max"] == 0.75 and not viral["readable"]
    assert compare.summarise_subgroups(rows, min_images=4)["readable"].all()


def test_the_paired_difference_has_a_t_interval_across_replicates():
    differences = compare.subgroup_differences(compare.subgroup_rows(study_runs()), "densenet121", "resnet50")
    viral = differences.set_index("subgroup").loc["viral"]
    per_replicate = np.array([0.25, 0.25, 0.0])
    low, high = stats.t.interval(0.95, 2, loc=per_replicate.mean(), scale=stats.sem(per_replicate))
    assert viral["mean"] == pytest.approx(per_replicate.mean())
    assert viral["sd"] == pytest.approx(per_replicate.std(ddof=1))
    assert (viral["ci_low"], viral["ci_high"]) == pytest.approx((low, high))
    assert (viral["model_higher"], viral["reference_higher"], viral["replicates"]) == (2, 0, 3)
    normal = differences.set_index("subgroup").loc["NORMAL"]
    assert normal["mean"] == 0.25 and normal["ci_low"] == normal["ci_high"] == 0.25  # the same in every replicate


def test_one_replicate_gives_no_interval():
    rows = compare.subgroup_rows(study_runs(seeds=(1,)))
    assert compare.subgroup_differences(rows, "densenet121", "resnet50")[["sd", "ci_low", "ci_high"]].isna().all().all()


def test_differences_need_both_models():
    rows = compare.subgroup_rows([fake_run("resnet50", 1, RESNET)])
    with pytest.raises(ValueError, match=r"'densenet121' and 'resnet50'.*hold \['resnet50'\]"):
        compare.subgroup_differences(rows, "densenet121", "resnet50")


def test_rows_read_back_from_a_file_are_checked_naming_it():
    with pytest.raises(ValueError, match=r"subgroups\.csv lacks columns \['share_correct'\].*--only 04"):
        compare.check_subgroup_rows(pd.DataFrame(columns=["model", "seed", "subgroup", "group", "images", "correct"]),
                                    "reports/x/subgroups.csv")
    odd = compare.subgroup_rows([fake_run("resnet50", 1, RESNET)]).assign(subgroup="fungal")
    with pytest.raises(ValueError, match=r"reports/x/subgroups\.csv names subgroups \['fungal'\]"):
        compare.check_subgroup_rows(odd, "reports/x/subgroups.csv")
