"""The exploratory study's decision, as notebook 04's code computes it from the committed records and the index
shows it (real data: the records' test images are matched to the data set)."""
import json
import re
import shutil

import pytest

from cxrlib.contract import REPO_ROOT, SEED_PAIRS_FIGURE, STUDY_FILE
from cxrlib.report import comparison
from cxrlib.runner import index
from helpers import CHROMIUM, fabricated_record, local_links

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def study_report(real_data_dir, tmp_path_factory):
    """A report directory holding the committed records, after 04's setup and headline sections ran on them."""
    report_dir = tmp_path_factory.mktemp("reports") / "cpu"
    shutil.copytree(REPO_ROOT / "reports" / "cpu" / "runs", report_dir / "runs")
    namespace = {"profile": "cpu", "data_dir": str(real_data_dir), "runs_dir": str(report_dir / "models"),
                 "report_dir": str(report_dir), "threshold_policy": "fixed", "youden_delta": 0.02,
                 "target_sensitivity": 0.95, "focus_seed": None, "study": "exploratory-cpu", "n_boot": 50,
                 "n_examples": 1, "sampling_seed": 42}
    setup = comparison.setup(namespace)
    comparison.study_section(setup)
    return report_dir


def test_the_decision_applies_the_plans_rule_to_the_committed_replicates(study_report):
    record = json.loads((study_report / STUDY_FILE).read_text())
    assert record["decision"] == ("Exploratory study: five replicates, one shared recipe. The study detects no "
                                  "difference between DenseNet-121 and ResNet-50.")
    assert "ROC-AUC: DenseNet-121 − ResNet-50 = −0.0064" in record["decision_details"]
    assert "higher in 0 and lower in 5 of 5 replicates" in record["decision_details"]
    assert record["seeds"] == [1, 2, 3, 4, 5] and record["policy"] == "fixed 0.5"
    met = {row[0]: row[2] for row in record["expectations"]["rows"]}
    assert met["ResNet-50: mean ROC-AUC ≥ 0.96"] == "yes" and met["DenseNet-121: mean ROC-AUC ≥ 0.96"] == "no"
    assert (study_report / SEED_PAIRS_FIGURE).stat().st_size > 10_000


def test_the_index_leads_with_the_decision_and_links_the_plan(study_report):
    page = index.write_index(study_report, fabricated_record(), "unused when a study is present").read_text()
    lead = page.index('<p class="lead">')
    assert page.index("The study detects no difference", lead) < page.index("<h2", lead)
    links = local_links(page)
    for target in ("docs/PREREGISTRATION.md", "studies/exploratory-cpu.yaml"):  # resolvable from the page
        assert REPO_ROOT / target in {(study_report / link).resolve() for link in links}, target
    assert f'src="{SEED_PAIRS_FIGURE}"' in page and "What the plan expected, met or not" in page
    assert "square 227×227" in page and "Always PNEUMONIA: accuracy" in page
    assert "unused when a study is present" not in page and "reference" not in page.lower()
    assert not [link for link in links if not (study_report / link).exists() and link != "runner.json"]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install chromium)")
def test_the_index_tables_fit_a_laptop_and_keep_words_and_values_whole(study_report):
    """At 1,000 px no table scrolls sideways (headers wrap between words); in a 700 px window no one-word cell
    ("ROC-AUC" broke as "ROC-" / "AUC") and no value ("0.962 ± 0.004") is broken over lines."""
    from playwright.sync_api import sync_playwright

    page_file = index.write_index(study_report, fabricated_record(), "unused when a study is present")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(page_file.as_uri())
        scrolling = page.evaluate("""() => [...document.querySelectorAll('.table-wrap')]
            .filter(wrap => wrap.scrollWidth > wrap.clientWidth).map(wrap => wrap.textContent.slice(0, 80))""")
        page.set_viewport_size({"width": 700, "height": 900})
        lines = page.evaluate("""() => [...document.querySelectorAll('.table-wrap td')].map(cell => {
            const range = document.createRange(); range.selectNodeContents(cell);
            return [cell.textContent, new Set([...range.getClientRects()].map(rect => Math.round(rect.top))).size];
        })""")
        browser.close()
    assert scrolling == []
    values = [(text, count) for text, count in lines if re.match(r"-?\d", text)]
    assert any(text == "ROC-AUC" for text, _ in lines) and any("±" in text for text, _ in values)
    assert [text for text, count in lines if count > 1 and " " not in text] == []
    assert [text for text, count in values if count > 1 + text.count(" (")] == []  # breaks only before "("


def test_without_a_plan_no_earlier_decision_survives(study_report, real_data_dir):
    namespace = {"profile": "cpu", "data_dir": str(real_data_dir), "runs_dir": str(study_report / "models"),
                 "report_dir": str(study_report), "threshold_policy": "fixed", "youden_delta": 0.02,
                 "target_sensitivity": 0.95, "focus_seed": None, "study": None, "n_boot": 50, "n_examples": 1,
                 "sampling_seed": 42}
    comparison.study_section(comparison.setup(namespace))
    assert not (study_report / STUDY_FILE).exists() and not (study_report / SEED_PAIRS_FIGURE).exists()


def test_a_plan_shows_its_earlier_study_beside_it_not_pooled(real_data_dir, tmp_path, monkeypatch):
    """A 'confirmatory' plan over the exploratory records, beside the exploratory plan: every difference is 0."""
    from cxrlib import plan

    studies = tmp_path / "studies"
    studies.mkdir()
    exploratory = (REPO_ROOT / "studies" / "exploratory-cpu.yaml").read_text()
    (studies / "exploratory-cpu.yaml").write_text(exploratory)
    half_width = "  - {model: densenet121, metric: roc_auc, statistic: half_width, bound: at_most, value: 0.004}\n"
    (studies / "again.yaml").write_text(exploratory.replace("kind: exploratory", "kind: confirmatory")
                                        + half_width + "beside: exploratory-cpu\n")
    monkeypatch.setattr(plan, "STUDIES_DIR", studies)
    report_dir = tmp_path / "reports" / "cpu"
    shutil.copytree(REPO_ROOT / "reports" / "cpu" / "runs", report_dir / "runs")
    namespace = {"profile": "cpu", "data_dir": str(real_data_dir), "runs_dir": str(tmp_path / "models"),
                 "report_dir": str(report_dir), "threshold_policy": "fixed", "youden_delta": 0.02,
                 "target_sensitivity": 0.95, "focus_seed": None, "study": "again", "n_boot": 50, "n_examples": 1,
                 "sampling_seed": 42}
    comparison.study_section(comparison.setup(namespace))
    record = json.loads((report_dir / STUDY_FILE).read_text())
    expected = {row[0]: row[1:] for row in record["expectations"]["rows"]}  # the exploratory interval: ±0.0067
    assert expected["DenseNet-121 − ResNet-50: half-width of the 95% interval of ROC-AUC ≤ 0.004"] == ["0.0067", "no"]
    beside = record["beside"]
    assert beside["plan"] == "studies/exploratory-cpu.yaml"
    headers, rows = beside["table"]["headers"], beside["table"]["rows"]
    assert headers[2:] == ["Confirmatory", "Exploratory", "Difference (95% Welch interval)"]
    by_model = {(row[0], row[1]): row for row in rows}
    assert set(by_model) == {(model, metric) for model in ("ResNet-50", "DenseNet-121", "ensemble (mean)")
                             for metric in ("ROC-AUC", "accuracy")}
    assert by_model[("ResNet-50", "ROC-AUC")][2] == by_model[("ResNet-50", "ROC-AUC")][3] == "0.9616 ± 0.0043 (5)"
    assert all(row[4].startswith("0.0000 (−0.") for row in rows)  # the same records: no difference, a symmetric interval
    page = index.write_index(report_dir, fabricated_record(), "unused").read_text()
    assert "Beside the earlier study, not pooled" in page and "0.9616\u00a0±\u00a00.0043 (5)" in page
    assert "This study is <em>confirmatory</em>" in page and "<em>exploratory</em>" not in page

