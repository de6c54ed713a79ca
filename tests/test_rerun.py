"""python -m cxrlib.compare.rerun: a rerun judged against committed run records, on small generated run folders."""
import json
import shutil
import subprocess

import pandas as pd
import pytest

from cxrlib.compare import rerun
from cxrlib.contract import REPO_ROOT
from cxrlib.data.index import relpath_from_path
from helpers import write_run

COMMITTED_STUDY = REPO_ROOT / rerun.COMMITTED_RECORDS
RUNS = ("resnet50/seed-1", "densenet121/seed-1")
MALFORMED_CSV = "path,subset,label,target,patient_id,prob\na,b,c\n1,2,3,4,5,6,7\n"  # rows of 3 and 7 fields


def write_runs(runs_dir, names=RUNS, relative_paths=False):
    """Run folders <arch>/seed-<k> as cxrlib.train writes them (relative_paths: images named as records name them)."""
    for name in names:
        arch, seed = name.split("/seed-")
        run_dir = write_run(runs_dir / name, arch, seed=int(seed))
        if relative_paths:
            predictions = pd.read_csv(run_dir / "predictions.csv")
            predictions.assign(path=predictions["path"].map(relpath_from_path)).to_csv(run_dir / "predictions.csv",
                                                                                         index=False)
    return runs_dir


@pytest.fixture
def folders(tmp_path):
    """(rerun, committed): the same two runs, the rerun's images named by another machine's absolute paths."""
    return write_runs(tmp_path / "rerun"), write_runs(tmp_path / "committed", relative_paths=True)


def edit_predictions(run_dir, edit) -> pd.DataFrame:
    """Rewrite run_dir/predictions.csv as edit(frame) returns it; returns the edited frame."""
    frame = edit(pd.read_csv(run_dir / "predictions.csv"))
    frame.to_csv(run_dir / "predictions.csv", index=False)
    return frame


def run_command(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command line."""
    status = rerun.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_identical_records_are_reproduced(capsys, folders):
    status, out, _ = run_command(capsys, *folders)
    assert status == rerun.REPRODUCED
    assert out.splitlines()[-1].startswith("reproduced within 1e-06: 2 runs")
    assert "resnet50/seed-1" in out and "densenet121/seed-1" in out


def test_a_probability_moved_beyond_the_tolerance_differs_and_names_the_image(capsys, folders):
    rerun_dir, committed_dir = folders
    threshold = json.loads((rerun_dir / "resnet50/seed-1/run.json").read_text())["threshold"]["value"]

    def flip_row_50(frame):
        flipped = 0.0 if frame["prob"][50] >= threshold else 1.0
        return frame.assign(prob=frame["prob"].where(frame.index != 50, flipped))

    edited = edit_predictions(rerun_dir / "resnet50/seed-1", flip_row_50)
    status, out, _ = run_command(capsys, rerun_dir, committed_dir)
    assert status == rerun.DIFFERS
    verdict = out.splitlines()[-1]
    image = relpath_from_path(edited["path"][50])
    assert verdict.startswith("differs: resnet50/seed-1: 1 of 120 probabilities moved by more than 1e-06")
    assert f"at {image}" in verdict and f"1 decisions changed (e.g. {image})" in verdict
    assert "densenet121/seed-1" not in verdict


def test_a_change_within_the_tolerance_is_reproduced_and_tolerance_zero_asks_for_identity(capsys, folders):
    rerun_dir, committed_dir = folders
    edit_predictions(rerun_dir / "resnet50/seed-1",
                     lambda frame: frame.assign(prob=frame["prob"].where(frame.index != 50, frame["prob"] + 1e-8)))
    assert run_command(capsys, rerun_dir, committed_dir)[0] == rerun.REPRODUCED
    status, out, _ = run_command(capsys, rerun_dir, committed_dir, "--tolerance", "0")
    assert status == rerun.DIFFERS and "1 of 120 probabilities moved by more than 0" in out


def test_a_seed_on_one_side_only_is_listed_without_changing_the_verdict(capsys, tmp_path):
    rerun_dir = write_runs(tmp_path / "rerun", ("resnet50/seed-1", "resnet50/seed-7"))
    committed_dir = write_runs(tmp_path / "committed", ("resnet50/seed-1", "resnet50/seed-2"))
    status, out, _ = run_command(capsys, rerun_dir, committed_dir)
    assert status == rerun.REPRODUCED
    assert "not rerun (committed only): resnet50/seed-2" in out
    assert "no committed record to compare with (rerun only): resnet50/seed-7" in out
    assert out.splitlines()[-1].startswith("reproduced within 1e-06: 1 runs")


def test_another_recorded_threshold_policy_is_compared_under_the_committed_one(capsys, folders):
    rerun_dir, committed_dir = folders
    record_path = rerun_dir / "resnet50/seed-1/run.json"
    record = json.loads(record_path.read_text())
    fixed = {**record["threshold"], "policy": "fixed", "value": 0.5}  # the cpu profile's policy since the study
    record_path.write_text(json.dumps({**record, "threshold": fixed}))
    status, out, _ = run_command(capsys, rerun_dir, committed_dir)
    assert status == rerun.REPRODUCED
    assert "note: resnet50/seed-1: the rerun recorded another threshold policy" in out


def test_records_compared_with_themselves_are_named_as_no_rerun(capsys, folders):
    committed_dir = folders[1]
    status, out, _ = run_command(capsys, committed_dir, committed_dir)
    assert status == rerun.REPRODUCED and "these are the committed records themselves, not a rerun" in out


@pytest.mark.parametrize("damage, message", [
    (lambda run_dir: (run_dir / "predictions.csv").unlink(), "resnet50/seed-1/predictions.csv is missing"),
    (lambda run_dir: edit_predictions(run_dir, lambda frame: frame.drop(columns="prob")),
     "resnet50/seed-1/predictions.csv lacks columns"),
    (lambda run_dir: (run_dir / "predictions.csv").write_text(MALFORMED_CSV),
     "resnet50/seed-1/predictions.csv: Error tokenizing data"),
    (lambda run_dir: (run_dir / "run.json").unlink(), "resnet50/seed-1/run.json is missing"),
])
def test_a_bad_record_exits_2_naming_the_file(capsys, folders, damage, message):
    rerun_dir, committed_dir = folders
    damage(rerun_dir / "resnet50/seed-1")
    status, out, err = run_command(capsys, rerun_dir, committed_dir)
    assert status == rerun.BAD_INPUT and out == ""
    assert message in err and "Traceback" not in err


def test_a_missing_folder_or_no_common_run_exits_2(capsys, tmp_path, folders):
    rerun_dir, committed_dir = folders
    status, _, err = run_command(capsys, tmp_path / "nowhere", committed_dir)
    assert status == rerun.BAD_INPUT and f"the rerun folder {tmp_path / 'nowhere'} does not exist" in err
    other = write_runs(tmp_path / "other", ("resnet50/seed-3",))
    status, _, err = run_command(capsys, other, committed_dir)
    assert status == rerun.BAD_INPUT and "no <arch>/seed-<k> is in both folders" in err


def test_the_default_committed_records_come_from_git_head_not_the_working_tree(tmp_path):
    repo = tmp_path / "repo"
    write_runs(repo / rerun.COMMITTED_RECORDS, relative_paths=True)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "records"], check=True)
    committed = pd.read_csv(repo / rerun.COMMITTED_RECORDS / "resnet50/seed-1/predictions.csv")
    edit_predictions(repo / rerun.COMMITTED_RECORDS / "resnet50/seed-1", lambda frame: frame.assign(prob=0.5))
    extracted = rerun.committed_records(tmp_path / "extracted", repo)
    assert pd.read_csv(extracted / "resnet50/seed-1/predictions.csv").equals(committed)
    with pytest.raises(rerun.RerunInputError, match="cannot read reports/cpu/runs as committed at git HEAD"):
        rerun.committed_records(tmp_path / "elsewhere", tmp_path)


def test_a_profiles_runs_are_judged_against_that_profiles_committed_records(capsys, tmp_path):
    assert rerun.profile_records(tmp_path / "runs" / "cpu-confirmatory") == "reports/cpu-confirmatory/runs"
    confirmatory = REPO_ROOT / "reports" / "cpu-confirmatory" / "runs"
    rerun_dir = tmp_path / "cpu-confirmatory"
    for name in ("resnet50/seed-2001", "densenet121/seed-2001"):
        shutil.copytree(confirmatory / name, rerun_dir / name)
    status, out, _ = run_command(capsys, rerun_dir)
    assert status == rerun.REPRODUCED
    assert "against reports/cpu-confirmatory/runs as committed at git HEAD" in out.splitlines()[0]
    assert out.splitlines()[-1].startswith("reproduced within 1e-06: 2 runs match the committed records")
    status, _, err = run_command(capsys, write_runs(tmp_path / "no-such-profile"))
    assert status == rerun.BAD_INPUT and "cannot read reports/no-such-profile/runs as committed at git HEAD" in err
    status, _, err = run_command(capsys, tmp_path / "no-such-profile-either")
    assert status == rerun.BAD_INPUT and f"the rerun folder {tmp_path / 'no-such-profile-either'} does not exist" in err


@pytest.mark.skipif(not COMMITTED_STUDY.is_dir(), reason=f"the study's records are not in {COMMITTED_STUDY}")
def test_the_committed_study_records_reproduce_themselves(capsys):
    status, out, _ = run_command(capsys, COMMITTED_STUDY, COMMITTED_STUDY)
    assert status == rerun.REPRODUCED
    assert out.splitlines()[-1] == ("reproduced within 1e-06: 10 runs match the committed records "
                                    "(largest |Δ probability| 0)")
