"""The run record (runner.json), the index page (the study's decision, links to every report, run facts) and
the page of the comparison table.

The index shows what the comparison notebook saved into the report directory: the study's decision, figure,
paired differences, expectations and within-group view (study.json, seed_pairs.png, when the records belong to a
study plan), the headline table (comparison.csv), each replicate (seeds.csv), the ROC figure (roc_curves.png), and
near the end, for a reader of a medical model, sensitivity per pneumonia subtype and calibration (subgroups.csv,
calibration.csv) with a link to the model card.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
import yaml

from cxrlib import compare
from cxrlib.contract import (CALIBRATION_FILE, COMPARISON_FILE, COMPARISON_MARKDOWN, COMPARISON_PAGE, FACTORIAL_FIGURE,
                             FACTORIAL_FILE, INDEX_PAGE, RECORDS_DIR, REPO_ROOT, ROC_FIGURE, RUN_LOG_FILE,
                             RUNNER_RECORD_FILE, SEED_PAIRS_FIGURE, SEEDS_FILE, STUDIES_DIR, STUDY_FILE, SUBGROUPS_FILE)
from cxrlib.files import write_atomic
from cxrlib.report import model_card, reader, stress
from cxrlib.report.format import (POLICY_NAMES, Table, column_label, display_table, headline_table, setting_text,
                                  value_text, without_constant_columns)
from cxrlib.runtime import version_text
from cxrlib.runner.pages import render, shown_figure, write_table_page

# What the index's template links to, by name (the files themselves are named in cxrlib.contract).
LINKED_FILES = {"comparison_page": COMPARISON_PAGE, "comparison_file": COMPARISON_FILE, "roc_figure": ROC_FIGURE,
                "run_log": RUN_LOG_FILE, "runner_record": RUNNER_RECORD_FILE, "seed_pairs": SEED_PAIRS_FIGURE,
                "factorial_figure": FACTORIAL_FIGURE}
# comparison.csv from before the seed study: one row per model, metrics with bootstrap intervals.
CI_HEADLINE = ("model", "accuracy", "roc_auc", "sensitivity", "specificity", "macro_f1", "threshold")
SEED_COLUMNS_HIDDEN = ("policy", "is_primary")  # the caption names the policy instead


def comparison_is_stale(notebooks: dict) -> bool:
    """True when a training notebook finished after the comparison notebook last ran (e.g. after --only 02)."""
    finished = {kind: [info["finished"] for info in notebooks.values() if info.get("kind") == kind]
                for kind in ("train", "compare")}
    return bool(finished["train"] and finished["compare"]) and max(finished["train"]) > max(finished["compare"])


def headline(report_dir: Path) -> tuple[Table, str] | None:
    """comparison.csv as the index shows it, and what its cells mean; None when there is none yet."""
    path = report_dir / COMPARISON_FILE
    if not path.is_file():
        return None
    comparison = pd.read_csv(path)
    if any(column.endswith("_mean") for column in comparison):
        table, same = without_constant_columns(display_table(headline_table(comparison)))
        return (table, "Test set. Each cell: mean ± standard deviation (smallest–largest) across the training seeds; "
                       f"a single seed shows its value alone. {same}".strip())
    return (display_table(comparison, list(CI_HEADLINE)),
            "Test set. Each cell: the value with its 95% bootstrap confidence interval in brackets.")


def seed_table(report_dir: Path) -> tuple[Table, str, str] | None:
    """seeds.csv (one row per model and seed) at the headline policy without its constant columns, that policy's
    name, and a sentence naming the constant columns; None without it."""
    path = report_dir / SEEDS_FILE
    if not path.is_file():
        return None
    seeds = pd.read_csv(path)
    policy = ""
    if "is_primary" in seeds:
        seeds = seeds[seeds["is_primary"].astype(bool)]
        policy = POLICY_NAMES.get(seeds["policy"].iloc[0], seeds["policy"].iloc[0]) if len(seeds) else ""
    table, same = without_constant_columns(display_table(seeds, [c for c in seeds.columns
                                                                  if c not in SEED_COLUMNS_HIDDEN]))
    return table, policy, same


def study_record(report_dir: Path) -> dict | None:
    """study.json (the study plan's decision, expectations and tables as notebook 04 measured them), with each
    table as a ``Table`` and the plan's files as links from the report directory; None without one."""
    path = report_dir / STUDY_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    for key in ("differences", "expectations", "within_group"):
        record[key] = Table(record[key]["headers"], record[key]["rows"])
    for key in ("plan", "document"):
        record[f"{key}_href"] = Path(os.path.relpath(REPO_ROOT / record[key], report_dir)).as_posix()
    beside = record.get("beside")  # an earlier study the plan shows next to this one (absent in older records)
    if beside:
        beside["table"] = Table(beside["table"]["headers"], beside["table"]["rows"])
        beside["plan_href"] = Path(os.path.relpath(REPO_ROOT / beside["plan"], report_dir)).as_posix()
    return record


def repo_link(target: Path, report_dir: Path) -> str | None:
    """``target`` relative to ``report_dir`` when both lie in the repository (a page must not show this machine's
    paths), else None."""
    inside = all(Path(path).resolve().is_relative_to(REPO_ROOT.resolve()) for path in (target, report_dir))
    return Path(os.path.relpath(target, report_dir)).as_posix() if inside else None


def later_studies(report_dir: Path, study: dict | None) -> list[dict]:
    """The studies planned from this one (plans naming it as ``beside``, or as holding a factorial's cells), each
    with its decision or answer as its own report states it (else its title and plan) and a link to its index."""
    if not study:
        return []
    name = Path(study["plan"]).stem
    found = []
    for path in sorted(STUDIES_DIR.glob("*.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        holders = {holder for row in (values.get("cells") or {}).values() for holder in row.values()}
        if values.get("beside") != name and name not in holders:
            continue
        later_dir = REPO_ROOT / "reports" / str(values.get("profile"))
        said = [json.loads(record.read_text()).get(key) for record, key in
                ((later_dir / STUDY_FILE, "decision"), (later_dir / FACTORIAL_FILE, "answer")) if record.is_file()]
        target = later_dir / INDEX_PAGE if said else REPO_ROOT / str(values.get("document"))
        found.append({"text": said[0] if said else f"{values.get('title')} (running; its plan: {values.get('document')})",
                      "href": repo_link(target, report_dir)})
    return found


def factorial_record(report_dir: Path) -> dict | None:
    """factorial.json (a factorial study's answer, cells, contrasts, costs and expectations as notebook 04 measured
    them), each table as a ``Table`` and the plan's files as links; None without one."""
    path = report_dir / FACTORIAL_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    for key in ("cells", "contrasts", "costs", "expectations"):
        record[key] = Table(record[key]["headers"], record[key]["rows"])
    for key in ("plan", "document"):
        record[f"{key}_href"] = Path(os.path.relpath(REPO_ROOT / record[key], report_dir)).as_posix()
    return record


def search_reports(report_dir: Path) -> list[dict]:
    """The hyperparameter-search reports beside the report directory (reports/tune-<name>/index.html)."""
    return [{"name": page.parent.name.removeprefix("tune-"), "href": f"../{page.parent.name}/{INDEX_PAGE}"}
            for page in sorted(report_dir.parent.glob(f"tune-*/{INDEX_PAGE}"))]


def duration_text(seconds: float) -> str:
    """``41 s``, ``12.5 min`` or ``1 h 16 min``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min"


def when_text(iso: str) -> str:
    """``2026-11-26T03:03:34`` as ``26 Nov 2026, 03:03``."""
    return dt.datetime.fromisoformat(iso).strftime("%d %b %Y, %H:%M")


def report_links(report_dir: Path, notebooks: dict) -> list[dict]:
    """One entry per notebook report present in ``report_dir``, in run order."""
    return [{"href": f"{stem}.html", "title": info.get("title", stem), "stem": stem,
             "duration": duration_text(info["seconds"]), "finished": when_text(info["finished"])}
            for stem, info in sorted(notebooks.items()) if (report_dir / f"{stem}.html").is_file()]


def write_record(report_dir: Path, record: dict) -> Path:
    """runner.json: what ran, with which parameters, from which code, how long and how much memory it took."""
    return write_atomic(report_dir / RUNNER_RECORD_FILE, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def write_comparison_page(report_dir: Path) -> Path | None:
    """comparison.html: comparison.csv as a page linking the CSV and Markdown files; None without comparison.csv."""
    table = report_dir / COMPARISON_FILE
    if not table.is_file():
        return None
    markdown = report_dir / COMPARISON_MARKDOWN
    downloads = {"CSV": COMPARISON_FILE, **({"Markdown": COMPARISON_MARKDOWN} if markdown.is_file() else {})}
    title, lead = markdown_heading(markdown) if markdown.is_file() else ("", "")
    comparison = pd.read_csv(table)
    shown = headline_table(comparison) if any(column.endswith("_mean") for column in comparison) else comparison
    return write_table_page(report_dir / COMPARISON_PAGE, shown, title or "Comparison", downloads, lead)


def markdown_heading(path: Path) -> tuple[str, str]:
    """The ``# title`` line of a Markdown file notebook 04 wrote and the paragraph after it ('' where absent)."""
    blocks = path.read_text().split("\n\n")
    if not blocks[0].startswith("# "):
        return "", ""
    lead = blocks[1] if len(blocks) > 1 and not blocks[1].lstrip().startswith("|") else ""
    return blocks[0].removeprefix("# ").strip(), lead.strip()


def stress_record(report_dir: Path) -> dict | None:
    """The stress test's plain sentence: from this study's runs when they hold stress records, else the committed
    measurement's with a link to docs/STRESS.md; None when neither exists."""
    own = stress.stress_summary(stress.measured_dirs(report_dir / RECORDS_DIR))
    if own is not None:
        sentence = stress.plain_sentence(own)
        return None if sentence is None else {"sentence": sentence, "own": True, "href": None}
    sentence = stress.measured_sentence()
    return None if sentence is None else {"sentence": sentence, "own": False,
                                          "href": repo_link(stress.NOTE_FILE, report_dir)}


def reader_record(report_dir: Path) -> dict | None:
    """Notebook 04's subgroup and calibration results (subgroups.csv, calibration.csv) as the index's compact tables,
    the stress test's sentence, and the link to docs/MODEL_CARD.md when the card describes this study; None without
    them."""
    subgroups, calibration = report_dir / SUBGROUPS_FILE, report_dir / CALIBRATION_FILE
    if not (subgroups.is_file() and calibration.is_file()):
        return None
    rows = compare.check_subgroup_rows(pd.read_csv(subgroups), str(subgroups))
    card = model_card.CARD_FILE
    return {"subgroups": display_table(reader.subgroup_table(rows, ranges=False).drop(columns="readable")),
            "calibration": display_table(reader.calibration_table(pd.read_csv(calibration), ranges=False)
                                         .drop(columns="mean output")),
            "card_href": repo_link(card, report_dir) if card.is_file() and model_card.describes(report_dir) else None,
            "stress": stress_record(report_dir)}


def write_index(report_dir: Path, record: dict, description: str) -> Path:
    """index.html for ``report_dir`` from its run record and the tables the notebooks left there."""
    notes = [record["note"]] if record.get("note") else []
    if record.get("failure"):
        notes.append(f"This run failed, so these reports did not replace the earlier ones: {record['failure']}")
    if comparison_is_stale(record["notebooks"]):
        notes.append("A model was retrained after the comparison was made, so the comparison below is out of date; "
                     "re-run it with --only 04.")
    reports = report_links(report_dir, record["notebooks"])
    nav = {"home": None, "profile": record["profile"], "previous": None,
           "next": {"href": reports[0]["href"], "title": reports[0]["title"]} if reports else None}
    present = {key: (report_dir / name).is_file() for key, name in LINKED_FILES.items()}
    figures = {key: shown_figure(report_dir / name) for key, name in LINKED_FILES.items() if name.endswith(".png")}
    compare_report = next((r for r in reports if record["notebooks"][r["stem"]].get("kind") == "compare"), None)
    page = render("index.html.j2", title=f"cxr-compare reports: profile {record['profile']}", nav=nav,
                  record=record, description=description, notes=notes, headline=headline(report_dir),
                  seeds=seed_table(report_dir), study=study_record(report_dir), searches=search_reports(report_dir),
                  factorial=factorial_record(report_dir), later=later_studies(report_dir, study_record(report_dir)),
                  reader=reader_record(report_dir),
                  names=LINKED_FILES, present=present, figures=figures, compare_report=compare_report, reports=reports,
                  version=version_text(record["code_version"]), duration_text=duration_text,
                  when_text=when_text,
                  parameters={column_label(k): setting_text(k, v) for k, v in record["parameters"].items()},
                  profile_href=repo_link(REPO_ROOT / record["profile_file"], report_dir),
                  overrides={k: value_text(v) for k, v in record["overrides"].items()})
    return write_atomic(report_dir / INDEX_PAGE, page)
