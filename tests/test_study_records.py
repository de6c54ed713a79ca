"""The studies' committed records: the exploratory study's (reports/cpu/runs) stay exactly as the study produced
them; each replicate of the confirmatory study (reports/cpu-confirmatory/runs) ran its plan's code, as planned.

Format migrations are allowed (e.g. image paths made relative to the data root on 2026-12-06); the
probabilities, labels, patients and subsets of every row are not. The digests were taken from the records as the
study committed them, with each image named by its ``split/label/file``.
"""
import dataclasses
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cxrlib import plan, runtime
from cxrlib.compare.runs import load_runs
from cxrlib.contract import PREDICTION_COLUMNS, REPO_ROOT
from cxrlib.data.index import relpath_from_path

RECORDS = REPO_ROOT / "reports" / "cpu" / "runs"
DIGESTS = json.loads((Path(__file__).parent / "data" / "exploratory_study_predictions.json").read_text())
CONFIRMATORY = plan.load_plan("confirmatory-cpu")
CONFIRMATORY_RECORDS = REPO_ROOT / CONFIRMATORY.records
# Every committed predictions.csv of both studies (the confirmatory one has as many as have finished).
PREDICTIONS = [*(RECORDS / record for record in sorted(DIGESTS)),
               *sorted(CONFIRMATORY_RECORDS.glob("*/seed-*/predictions.csv"))]


def canonical_digest(path: Path) -> str:
    """sha256 of predictions.csv with images named by ``split/label/file`` and probabilities written exactly."""
    frame = pd.read_csv(path)
    frame["path"] = frame["path"].map(relpath_from_path)
    return hashlib.sha256(frame.to_csv(index=False, float_format="%.17g").encode()).hexdigest()


def test_every_replicate_record_is_present():
    found = sorted(path.relative_to(RECORDS).as_posix() for path in RECORDS.glob("*/seed-*/predictions.csv"))
    assert found == sorted(DIGESTS)


@pytest.mark.parametrize("record", sorted(DIGESTS))
def test_predictions_are_unchanged(record):
    assert canonical_digest(RECORDS / record) == DIGESTS[record]


@pytest.mark.parametrize("predictions", PREDICTIONS, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_records_name_images_relative_to_the_data_root(predictions):
    frame = pd.read_csv(predictions)
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert (frame["path"] == frame["path"].map(relpath_from_path)).all(), "absolute or machine-specific paths"


def confirmatory_runners() -> list[Path]:
    """The confirmatory study's committed replicates (their runner records), as many as have finished."""
    return sorted(CONFIRMATORY_RECORDS.glob("runner-seed-*.json"))


def test_runner_records_hold_no_machine_paths():
    for path in [*RECORDS.glob("runner-seed-*.json"), *confirmatory_runners(),
                 REPO_ROOT / "reports" / "seed43" / "cpu" / "runner.json"]:
        assert not json.loads(path.read_text())["profile_file"].startswith("/"), path


def test_confirmatory_replicates_ran_the_plans_code_in_float32_with_planned_seeds():
    """Each committed replicate started from the commit that added the plan, unmodified, and trained float32."""
    added = runtime.adding_commit(CONFIRMATORY.document)
    if added is None:
        pytest.skip("no git history here (shallow clone): the plan's commit cannot be looked up")
    for runner in confirmatory_runners():
        seed = int(runner.stem.removeprefix("runner-seed-"))
        assert seed in CONFIRMATORY.seeds, runner
        assert json.loads(runner.read_text())["code_version"] == {"commit": added["commit"], "modified": False}, runner
        for arch in (CONFIRMATORY.reference, CONFIRMATORY.compared):
            run = json.loads((CONFIRMATORY_RECORDS / arch / f"seed-{seed}" / "run.json").read_text())
            assert (run["seed"], run["precision"], run["config"]["split_seed"]) == (seed, "float32", seed), runner
            assert run["device"]["cpu_kind"], f"{runner}: the replicate's CPU is not recorded"


def test_factorial_replicates_ran_the_plans_code_on_the_confirmatory_splits():
    """Each committed replicate of the factorial study started from its plan's commit, unmodified, trained float32
    on the committed confirmatory split of its seed (equal split fingerprints), and names its CPU kind."""
    factorial = plan.load_factorial("factorial-cpu")
    added = runtime.adding_commit(factorial.document)
    if added is None:
        pytest.skip("no git history here (shallow clone): the plan's commit cannot be looked up")
    for runner in sorted((REPO_ROOT / factorial.records).glob("runner-seed-*.json")):
        seed = int(runner.stem.removeprefix("runner-seed-"))
        assert seed in factorial.seeds, runner
        assert json.loads(runner.read_text())["code_version"] == {"commit": added["commit"], "modified": False}, runner
        confirmatory = json.loads((CONFIRMATORY_RECORDS / "resnet50" / f"seed-{seed}" / "run.json").read_text())
        for arch in factorial.own_archs():
            run = json.loads((REPO_ROOT / factorial.records / arch / f"seed-{seed}" / "run.json").read_text())
            assert (run["seed"], run["precision"], run["config"]["split_seed"]) == (seed, "float32", seed), runner
            assert run["split_fingerprint"] == confirmatory["split_fingerprint"], f"{runner}: another split"
            assert run["device"]["cpu_kind"], f"{runner}: the replicate's CPU is not recorded"


def study_records() -> list[tuple[str, str, Path]]:
    """(plan, profile, committed records folder) of every study plan whose replicates have committed records."""
    found = []
    for path in sorted((REPO_ROOT / "studies").glob("*.yaml")):
        loaded = (plan.load_factorial if plan.plan_kind(path.stem) == "factorial" else plan.load_plan)(path.stem)
        if list((REPO_ROOT / loaded.records).glob("*/seed-*/run.json")):
            found.append((path.stem, loaded.profile, REPO_ROOT / loaded.records))
    return found


@pytest.mark.parametrize("name, profile, records", study_records(), ids=lambda value: str(value).split("/")[-1])
def test_committed_records_of_every_study_pass_the_protocol_check(name, profile, records):
    runs = load_runs(records)
    assert {run.seed for run in runs} == {int(path.name.split("-")[1]) for path in records.glob("*/seed-*")}


@pytest.mark.parametrize("name, profile, records", study_records(), ids=lambda value: str(value).split("/")[-1])
def test_a_record_written_today_for_the_studys_profile_joins_its_committed_records(name, profile, records, tmp_path):
    """What a fresh clone's ./run_all.sh --profile <profile> does: today's trainer writes one replicate's run.json
    beside the committed replicates, and notebook 04's loader must accept them as one protocol (issue 32)."""
    from cxrlib.runner.profiles import load_profile
    from cxrlib.train.replicates import replicate_config

    params = load_profile(REPO_ROOT / "profiles" / f"{profile}.yaml")
    shutil.copytree(records, tmp_path / "runs")
    seed_dirs = sorted((tmp_path / "runs").glob(f"*/seed-{sorted(params['seeds'])[0]}")) or sorted(
        (tmp_path / "runs").glob("*/seed-*"))[:1]
    for seed_dir in seed_dirs:
        record = json.loads((seed_dir / "run.json").read_text())
        config = replicate_config(record["arch"], params, record["seed"], record.get("split_seed") or record["seed"])
        record["config"] = dataclasses.asdict(config)
        (seed_dir / "run.json").write_text(json.dumps(record))
    assert len(load_runs(tmp_path / "runs")) == len(load_runs(records))


def test_no_committed_page_or_note_holds_a_path_of_the_machine_that_made_it():
    """Committed reports, README and docs name files relative to the repository (or a placeholder), never
    /tmp, /work or a home folder of the machine that wrote them."""
    pages = [*REPO_ROOT.glob("reports/**/*.md"), *REPO_ROOT.glob("reports/**/*.html"), REPO_ROOT / "README.md",
             *REPO_ROOT.glob("docs/*.md")]
    leaking = [path.relative_to(REPO_ROOT).as_posix() for path in pages
               if any(prefix in path.read_text(errors="replace") for prefix in ("/tmp/", "/work/", "/root/", "/home/"))]
    assert not leaking


@pytest.mark.parametrize("name, profile, records", study_records(), ids=lambda value: str(value).split("/")[-1])
def test_each_studys_profile_resolves_to_what_its_plan_committed(name, profile, records):
    """A profile rewritten to extend another (issue 37) still gives every parameter the value the plan's commit held,
    so the committed plans govern what they governed."""
    from cxrlib.params import read_profile

    loaded = (plan.load_factorial if plan.plan_kind(name) == "factorial" else plan.load_plan)(name)
    added = runtime.adding_commit(loaded.document)
    if added is None:
        pytest.skip("no git history here (shallow clone): the plan's commit cannot be looked up")

    def at_plan(path: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "show", f"{added['commit']}:{path}"], cwd=REPO_ROOT, capture_output=True,
                              text=True)

    if at_plan(f"studies/{name}.yaml").returncode != 0:
        pytest.skip(f"studies/{name}.yaml was written after the study (not in its plan's commit {added['commit']}): "
                    "its profile ran with the overrides its plan document names")
    shown = at_plan(f"profiles/{profile}.yaml")
    assert shown.returncode == 0, f"profiles/{profile}.yaml is not in the plan's commit {added['commit']}"
    planned = yaml.safe_load(shown.stdout)
    planned = {**read_profile(planned.pop("extends")), **planned} if "extends" in planned else planned
    assert read_profile(profile) == planned
