"""docs/MODEL_CARD.md in the form of Mitchell et al. (2019), generated from a study's committed records, so that
no number in it can drift from them: ``python -m cxrlib.report.model_card`` writes it, ``--check`` says whether
the committed card is what the records give (tests/test_model_card.py runs the check).

It reads only committed files: the study's plan (studies/<name>.yaml), what notebook 04 wrote next to its report
(comparison.csv, seeds.csv, study.json, subgroups.csv, calibration.csv), the replicates' run.json files, the OOD
measurement (reports/ood_flag_rates.md) and the stress test's records (reports/stress-cpu, shown in docs/STRESS.md).
"""
from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import sem, t

from cxrlib import compare, plan
from cxrlib.backbones import title_of
from cxrlib.contract import (ARCHS, CALIBRATION_FILE, HEADLINE_METRICS, REPLICATE_PREFIX, REPO_ROOT,
                             RUN_RECORD_FILE, SEEDS_FILE, STUDY_FILE, SUBGROUPS_FILE, repo_relative)
from cxrlib.report.format import NAMES, column_label, markdown_table, number, setting_text
from cxrlib.report import stress
from cxrlib.report.reader import calibration_table, range_text, subgroup_difference_table, subgroup_table

CARD_FILE = REPO_ROOT / "docs" / "MODEL_CARD.md"
CARD_STUDY = "confirmatory-cpu"  # the study whose models the card describes
OOD_REPORT = REPO_ROOT / "reports" / "ood_flag_rates.md"
LINE_WIDTH = 116
LOWER_PREVALENCE = 0.10  # a screening population with far fewer pneumonias than the test folder
RECIPE = ("weights", "image_size", "epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule",
          "weight_decay", "label_smoothing", "augment_strength", "dropout", "head_units", "precision")
RENDER = ('./run_all.sh --profile {profile} --only 01 --only 04 --set "seeds=[{seeds}]"')


class CardError(Exception):
    """A record the card needs is missing or unreadable; the message names it and the command that writes it."""


@dataclass
class CardRecords:
    """Everything the card states a number from."""

    plan: plan.StudyPlan
    report_dir: Path
    per_seed: pd.DataFrame  # seeds.csv at the plan's primary policy
    study: dict  # study.json
    subgroups: pd.DataFrame  # subgroups.csv
    calibration: pd.DataFrame  # calibration.csv
    runs: dict[str, list[dict]]  # per architecture, every replicate's run.json
    ood_table: str  # the flagged-images table of reports/ood_flag_rates.md
    ood_run: str  # its sentence naming the run it was measured on
    stress_sentence: str  # the stress test's plain sentence (report.stress.measured_sentence)


def describes(report_dir: Path, study: str = CARD_STUDY) -> bool:
    """True when ``report_dir`` holds the study the card describes (its study.json names that plan), wherever the
    folder lies (the runner renders into a staging copy)."""
    path = Path(report_dir) / STUDY_FILE
    return path.is_file() and json.loads(path.read_text()).get("plan") == f"studies/{study}.yaml"


def render_command(study_plan: plan.StudyPlan) -> str:
    """The command that writes a study's report files from its committed records."""
    return RENDER.format(profile=study_plan.profile, seeds=", ".join(map(str, study_plan.seeds)))


def read_table(path: Path, fix: str) -> pd.DataFrame:
    """A committed CSV; a CardError naming it and ``fix`` when it is missing."""
    if not path.is_file():
        raise CardError(f"{repo_relative(path)} is missing; write it with: {fix}")
    return pd.read_csv(path)


def ood_flag_table(path: Path = OOD_REPORT) -> str:
    """The Markdown table under '## Flagged images' of the OOD measurement."""
    if not path.is_file():
        raise CardError(f"{repo_relative(path)} is missing; measure the flag with scripts/measure_ood.py (README: "
                        "'How well the flag works, measured')")
    lines = path.read_text().splitlines()
    if "## Flagged images" not in lines:
        raise CardError(f"{repo_relative(path)} has no '## Flagged images' section; write it again with "
                        "scripts/measure_ood.py")
    after = lines[lines.index("## Flagged images") + 1:]
    table = [line for line in after[next(i for i, line in enumerate(after) if line.startswith("|")):]]
    return "\n".join(table[:next((i for i, line in enumerate(table) if not line.startswith("|")), len(table))])


def ood_measured_run(path: Path = OOD_REPORT) -> str:
    """The OOD measurement's sentence naming the run it was measured on (its paragraph starting 'Run ')."""
    paragraph = next((block for block in path.read_text().split("\n\n") if block.startswith("Run ")), None)
    if paragraph is None:
        raise CardError(f"{repo_relative(path)} names no measured run (a paragraph starting 'Run '); write it again "
                        "with scripts/measure_ood.py")
    return " ".join(paragraph.split())


def stress_measured() -> str:
    """The committed stress test's plain sentence; a CardError naming the records and their fix when it has none."""
    sentence = stress.measured_sentence()
    if sentence is None:
        shifts = " and ".join(stress.condition_name(*shift) for shift in stress.PLAIN_SHIFTS)
        raise CardError(f"{repo_relative(stress.MEASUREMENT_RUNS)} holds no stress record under {shifts}; make it as "
                        f"{repo_relative(stress.NOTE_FILE)} says (python -m cxrlib.stress RUN_DIR)")
    return sentence


def run_records(records: Path, seeds) -> dict[str, list[dict]]:
    """Per architecture, the run.json of every planned replicate."""
    runs = {}
    for arch in ARCHS:
        paths = [records / arch / f"{REPLICATE_PREFIX}{seed}" / RUN_RECORD_FILE for seed in seeds]
        missing = [repo_relative(path) for path in paths if not path.is_file()]
        if missing:
            raise CardError(f"{', '.join(missing)} missing: the card describes every planned replicate")
        runs[arch] = [json.loads(path.read_text()) for path in paths]
    return runs


def read_records(study: str = CARD_STUDY) -> CardRecords:
    """The study's committed records the card is made from; a CardError naming what is missing and its fix."""
    study_plan = plan.load_plan(study)
    records = REPO_ROOT / study_plan.records
    report_dir = records.parent
    fix = render_command(study_plan)
    per_seed = read_table(report_dir / SEEDS_FILE, fix)
    per_seed = per_seed[per_seed["policy"] == study_plan.primary_policy]
    study_file = report_dir / STUDY_FILE
    if not study_file.is_file():
        raise CardError(f"{repo_relative(study_file)} is missing; write it with: {fix}")
    subgroups = compare.check_subgroup_rows(read_table(report_dir / SUBGROUPS_FILE, fix),
                                            repo_relative(report_dir / SUBGROUPS_FILE))
    calibration = read_table(report_dir / CALIBRATION_FILE, fix)
    return CardRecords(study_plan, report_dir, per_seed, json.loads(study_file.read_text()), subgroups, calibration,
                       run_records(records, study_plan.seeds), ood_flag_table(), ood_measured_run(),
                       stress_measured())


# ---------------------------------------------------------------- numbers

def t_interval_text(values: pd.Series, digits: int = 3) -> str:
    """``0.921 (0.916–0.927) [0.914–0.930]``: the mean, its 95% t-interval across replicates and their range."""
    values = values.to_numpy(float)
    half_width = t.ppf(0.975, len(values) - 1) * sem(values)
    mean = values.mean()
    return (f"{number(mean, digits)} ({number(mean - half_width, digits)}–{number(mean + half_width, digits)}) "
            f"[{number(values.min(), digits)}–{number(values.max(), digits)}]")


def predictive_values(sensitivity, specificity, prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    """PPV and NPV at ``prevalence`` from sensitivity and specificity (Bayes' rule)."""
    sensitivity, specificity = np.asarray(sensitivity, float), np.asarray(specificity, float)
    ppv = sensitivity * prevalence / (sensitivity * prevalence + (1 - specificity) * (1 - prevalence))
    npv = specificity * (1 - prevalence) / (specificity * (1 - prevalence) + (1 - sensitivity) * prevalence)
    return ppv, npv


def subgroup_counts(records: CardRecords) -> dict[str, int]:
    """Distinct test images per subgroup (NORMAL, bacterial, viral), from subgroups.csv."""
    rows = records.subgroups
    first = rows[(rows["group"] == "all") & (rows["seed"] == rows["seed"].iloc[0])
                 & (rows["model"] == rows["model"].iloc[0])]
    return dict(zip(first["subgroup"], first["images"].astype(int)))


def pneumonia_share(records: CardRecords) -> float:
    """The PNEUMONIA share of the distinct test images."""
    counts = subgroup_counts(records)
    return (sum(counts.values()) - counts["NORMAL"]) / sum(counts.values())


def threshold_text(records: CardRecords) -> str:
    """The threshold every replicate was scored at (seeds.csv, primary policy)."""
    thresholds = records.per_seed["threshold"].unique()
    if len(thresholds) != 1:
        raise CardError(f"the replicates of {records.plan.name} were scored at thresholds {sorted(thresholds)}; the "
                        "card states one pre-registered threshold: check seeds.csv")
    return f"{thresholds[0]:g}"


def metrics_table(records: CardRecords) -> pd.DataFrame:
    """Per model: each headline metric at the primary policy across replicates (``t_interval_text``)."""
    rows = []
    for arch in ARCHS:
        part = records.per_seed[records.per_seed["model"] == arch]
        rows.append({"model": arch, "replicates": len(part),
                     **{NAMES[metric]: t_interval_text(part[metric]) for metric in HEADLINE_METRICS}})
    return pd.DataFrame(rows)


def predictive_table(records: CardRecords) -> pd.DataFrame:
    """Per model and prevalence (the test folder's, ``LOWER_PREVALENCE``): PPV and NPV across replicates."""
    rows = []
    for arch in ARCHS:
        part = records.per_seed[records.per_seed["model"] == arch]
        for prevalence in (pneumonia_share(records), LOWER_PREVALENCE):
            ppv, npv = predictive_values(part["sensitivity"], part["specificity"], prevalence)
            rows.append({"model": arch, "PNEUMONIA share": number(prevalence),
                         "PPV": t_interval_text(pd.Series(ppv)), "NPV": t_interval_text(pd.Series(npv))})
    return pd.DataFrame(rows)


def recipe_table(records: CardRecords) -> pd.DataFrame:
    """Per setting of the training recipe, each architecture's value (as its run.json records it)."""
    configs = {arch: runs[0]["config"] for arch, runs in records.runs.items()}
    return pd.DataFrame({"setting": [column_label(key) for key in RECIPE],
                         **{title_of(arch): [setting_text(key, config.get(key)) for key in RECIPE]
                            for arch, config in configs.items()}})


def training_facts(records: CardRecords) -> str:
    """Per model: parameters, the best epochs chosen, training minutes and the CPUs, from run.json."""
    parts = []
    for arch, runs in records.runs.items():
        minutes = [run["timing"]["training"] / 60 for run in runs]
        best = sorted(run["best_epoch"] + 1 for run in runs)
        cpus = sorted({run["device"].get("cpu_kind", run["device"].get("cpu", "unknown CPU")) for run in runs})
        parts.append(f"{title_of(arch)}: {runs[0]['params']['total']:,} parameters; the saved epoch (highest "
                     f"validation ROC-AUC) was {', '.join(map(str, best))} of {runs[0]['config']['epochs']}; "
                     f"training took {min(minutes):.0f}–{max(minutes):.0f} min per replicate on {', '.join(cpus)}")
    counts = records.runs[ARCHS[0]][0]["counts"]
    return ("; ".join(parts) + f". Each replicate trained on {counts['train']:,} images and chose its epoch on "
            f"{counts['val']:,} validation images.")


def size_sentence(records: CardRecords) -> str:
    """Where each test subgroup's images lie among the stored sizes, from subgroups.csv."""
    rows = records.subgroups
    first = rows[(rows["seed"] == rows["seed"].iloc[0]) & (rows["model"] == rows["model"].iloc[0])
                 & (rows["group"] != "all")]
    parts = []
    for subgroup, part in first.groupby("subgroup", sort=False):
        spread = ", ".join(f"{int(count)} {group}" for group, count in
                           part.sort_values("images", ascending=False)[["group", "images"]].to_numpy())
        parts.append(f"{subgroup} {int(part['images'].sum())}: {spread}")
    return "; ".join(parts)


def calibration_means(records: CardRecords) -> dict[tuple[str, str], pd.Series]:
    """Mean Brier score and ECE per (model, output) across replicates."""
    means = records.calibration.groupby(["model", "output"])[["brier", "ece"]].mean()
    return {key: row for key, row in means.iterrows()}


def table_text(table: dict) -> str:
    """A table as study.json records it (headers, rows), in Markdown."""
    return markdown_table(pd.DataFrame(table["rows"], columns=table["headers"]))


# ---------------------------------------------------------------- the card's sections

def header(records: CardRecords) -> str:
    """Title, what the card covers and how it is made."""
    study_plan, added = records.plan, records.study.get("document_added") or {}
    sources = ", ".join(f"`{name}`" for name in (SEEDS_FILE, STUDY_FILE, SUBGROUPS_FILE, CALIBRATION_FILE))
    return f"""# Model card: ResNet-50 and DenseNet-121, NORMAL vs PNEUMONIA on pediatric chest X-rays

In the form of Mitchell et al., "Model Cards for Model Reporting" (FAT* 2019). It describes the models of the
{study_plan.kind} study `{study_plan.name}` ({records.study['title']}; plan `{study_plan.document}`, committed in
{added.get('commit', '–')} on {added.get('date', '–')} before any of its predictions existed): {len(study_plan.seeds)}
replicates (seeds {', '.join(map(str, study_plan.seeds))}) of each architecture.

**Generated, not written**: `python -m cxrlib.report.model_card` makes this file from the committed records
({sources} in `{repo_relative(records.report_dir)}/`, every replicate's `run.json`, and
`{repo_relative(OOD_REPORT)}`); `tests/test_model_card.py` fails when the file differs from what the records give.
After the records change, re-render the study (`{render_command(study_plan)}`) and run the command again.
"""


def details_section(records: CardRecords) -> str:
    """Model details: what the models are and how they were trained."""
    versions = records.runs[ARCHS[0]][0]["versions"]
    return f"""## Model details

- **Models**: two convolutional networks from `keras.applications`, ResNet-50 and DenseNet-121, each with a
  Dense head and one sigmoid output (the *score*), trained on a CPU with TensorFlow {versions['tensorflow']} and
  Keras {versions['keras']}. Code: this repository (`cxrlib/`), MIT licence.
- **Recipes**: each architecture at the recipe its plan fixed (`{records.plan.document}`), as every replicate's
  `run.json` records it. Both use class weights that count the two classes equally, label smoothing, augmentation,
  and keep the epoch with the highest validation ROC-AUC.

{markdown_table(recipe_table(records))}

- **Training facts** (`run.json`): {training_facts(records)}
- **Output**: the score ranks images; an image is called PNEUMONIA when its score is at least the pre-registered
  threshold **{threshold_text(records)}**. `python -m cxrlib.predict` also returns a Platt-calibrated
  `probability` and an out-of-distribution flag (below: neither can be trusted as its name suggests without
  reading this card).
- **The model files are not in git**; `./run_all.sh --profile {records.plan.profile} --only 02 --only 03 --set
  "seeds=[k]"` retrains replicate k (deterministic on one CPU kind; another kind rounds float32 differently).
"""


def intended_use_section() -> str:
    """Intended use and what lies outside it."""
    return """## Intended use

- **For research and teaching**: comparing architectures under a pre-registered protocol, and studying on a public
  data set how evaluation, shortcuts, calibration and failure analysis work.
- **Users**: machine-learning researchers, students and teachers.
- **Not for clinical use.** Not for diagnosis, triage, screening or any decision about a patient, and not as a
  second reader. The models are not a medical device and were not assessed as one. They have seen children aged
  1–5 from one hospital only; adults, other hospitals, other scanners, lateral views and other body parts are
  outside what they were trained or tested on.
"""


def factors_section(records: CardRecords) -> str:
    """Who and what the data cover, and the copy's shortcuts."""
    counts = subgroup_counts(records)
    return f"""## Factors: the population and the data copy

- **Population**: the Kermany et al. (2018) data set (CC BY 4.0): anterior-posterior chest X-rays of children aged
  1–5 from retrospective cohorts of **one hospital**, Guangzhou Women and Children's Medical Center (China), graded
  by two physicians (the test images also by a third). Sex, exact age, scanner, severity and comorbidities are not
  recorded, so no result can be split by them.
- **Subgroups evaluated**: the pneumonia subtype that every PNEUMONIA file name states (bacterial or viral), and the
  stored image size. Test folder, byte-identical images counted once: {counts['NORMAL']} NORMAL,
  {counts['bacterial']} bacterial and {counts['viral']} viral pneumonia ({sum(counts.values())} images).
- **The rebuilt data copy and its shortcuts**: the committed results come from a copy rebuilt from four public
  copies (`../shared/data/README.md`, notebook 1 in `{repo_relative(records.report_dir)}/01_data_exploration.html`).
  How an image was stored is tied to its label: its size, and how much pure-black border surrounds the body
  (NORMAL images carry more in every stored-size group, notebook 1). In the test folder: {size_sentence(records)}.
  A network can learn these instead of the lungs: the models resize every image to a square, which hides the
  stored size but not necessarily the traces of how a copy was resampled, and not the border.
"""


def metrics_section(records: CardRecords) -> str:
    """The metrics, why, and the uncertainty they carry."""
    return f"""## Metrics

ROC-AUC (ranking, independent of the threshold), and at the pre-registered threshold {threshold_text(records)}:
accuracy, sensitivity (share of PNEUMONIA images found) and specificity (share of NORMAL images called NORMAL).
PPV (share of PNEUMONIA among images called PNEUMONIA) and NPV (share of NORMAL among images called NORMAL)
depend on how common pneumonia is; they are given at the test folder's PNEUMONIA share and at
{LOWER_PREVALENCE:.0%}, computed from each replicate's sensitivity and specificity by Bayes' rule. Each cell: the
mean over the replicates, its 95% t-interval across replicates (round brackets: what retraining with another seed
changes) and the lowest–highest replicate (square brackets). The test images' own sampling adds to this: each
replicate's patient-bootstrap intervals are in notebook 4. Calibration: Brier score and expected calibration
error (ECE, ten bins).
"""


def analyses_section(records: CardRecords) -> str:
    """The quantitative analyses: headline, predictive values, subgroups, sizes, calibration, OOD."""
    pairs = [(records.plan.compared, records.plan.reference)]
    by_size = pd.concat([subgroup_table(records.subgroups, group).assign(group=group)
                         for group in dict.fromkeys(records.subgroups["group"]) if group != "all"], ignore_index=True)
    prevalence = records.calibration["calibration_prevalence"]
    return f"""## Quantitative analyses

### The test folder, at {threshold_text(records)}

{markdown_table(metrics_table(records))}

**The plan's decision** (`{STUDY_FILE}`): {records.study['decision']} {records.study['decision_details']}

### PPV and NPV

{markdown_table(predictive_table(records))}

### Subgroups: bacterial and viral pneumonia

Sensitivity within each pneumonia subtype, specificity among NORMAL images, across replicates as mean ± SD
(lowest–highest); a subgroup of fewer than {compare.MIN_READABLE_IMAGES} images is too small to read.

{markdown_table(subgroup_table(records.subgroups))}

Paired by replicate (descriptive: the plan made no comparison of subgroups, so no model is called better here):

{markdown_table(subgroup_difference_table(records.subgroups, pairs))}

Subtype and stored size go together in this copy, so the subtypes cannot be compared with the size held fixed.
Within each stored-size group:

{markdown_table(by_size[['group', 'model', 'subgroup', 'measured', 'images', 'mean ± SD (min–max)', 'readable']])}

Every metric within the stored-size groups (`{STUDY_FILE}`):

{table_text(records.study['within_group'])}

### Calibration

The raw score is trained with equal class weights and label smoothing: it ranks images but is not P(PNEUMONIA).
The `probability` of `cxrlib.predict` is the score through a logistic regression fitted on each run's validation
images (PNEUMONIA share {range_text(prevalence)}). On the test folder, whose PNEUMONIA share is
{number(pneumonia_share(records))} (compare the mean output):

{markdown_table(calibration_table(records.calibration))}

### The out-of-distribution flag

What `cxrlib.predict`'s `ood_flag` catches was measured once (`{repo_relative(OOD_REPORT)}`), on **one run, not a
replicate of this study**: {records.ood_run} Its flag threshold is the validation images' 99th percentile:

{records.ood_table}
"""


def false_alarm_sentence(records: CardRecords) -> str:
    """How often NORMAL children are called PNEUMONIA, and what that does to the PPV where pneumonia is rarer."""
    per_seed = records.per_seed.set_index("model")
    specificity = {arch: per_seed.loc[arch, "specificity"].mean() for arch in ARCHS}
    low_ppv = {arch: predictive_values(per_seed.loc[arch, "sensitivity"], per_seed.loc[arch, "specificity"],
                                       LOWER_PREVALENCE)[0].mean() for arch in ARCHS}
    one_in = round(1 / (1 - np.mean(list(specificity.values()))))
    false_share = 1 - max(low_ppv.values())
    return (f"Mean specificity {', '.join(f'{title_of(a)} {number(s)}' for a, s in specificity.items())}: about one "
            f"NORMAL child in {one_in} is called PNEUMONIA. At a PNEUMONIA share of {LOWER_PREVALENCE:.0%} the PPV "
            f"would be {', '.join(f'{title_of(a)} {number(v)}' for a, v in low_ppv.items())}: at least "
            f"{false_share:.0%} of the images called PNEUMONIA would be NORMAL.")


def operating_point_sentence(records: CardRecords) -> str:
    """How far each model's sensitivity and specificity move between its replicates."""
    per_seed = records.per_seed.set_index("model")
    return "; ".join(f"{title_of(arch)}: sensitivity {number(per_seed.loc[arch, 'sensitivity'].min())}–"
                     f"{number(per_seed.loc[arch, 'sensitivity'].max())}, specificity "
                     f"{number(per_seed.loc[arch, 'specificity'].min())}–"
                     f"{number(per_seed.loc[arch, 'specificity'].max())}" for arch in ARCHS)


def subtype_sentence(records: CardRecords) -> str:
    """Each model's mean sensitivity per pneumonia subtype and its lowest replicate."""
    summary = compare.summarise_subgroups(records.subgroups[records.subgroups["group"] == "all"]).set_index(
        ["model", "subgroup"])
    return "; ".join(f"{title_of(arch)}: bacterial {number(summary.loc[(arch, 'bacterial'), 'mean'])} (lowest "
                     f"replicate {number(summary.loc[(arch, 'bacterial'), 'min'])}), viral "
                     f"{number(summary.loc[(arch, 'viral'), 'mean'])} (lowest "
                     f"{number(summary.loc[(arch, 'viral'), 'min'])})" for arch in ARCHS)


def calibration_sentence(records: CardRecords) -> str:
    """What calibrating on validation did to the outputs on test, per model, and the validation ROC-AUC behind it."""
    means = calibration_means(records)
    changes = "; ".join(f"{title_of(arch)} Brier {number(means[(arch, 'score')]['brier'])} → "
                        f"{number(means[(arch, 'probability')]['brier'])}, ECE {number(means[(arch, 'score')]['ece'])}"
                        f" → {number(means[(arch, 'probability')]['ece'])}" for arch in ARCHS)
    worse = all(means[(arch, "probability")]["brier"] > means[(arch, "score")]["brier"] for arch in ARCHS)
    validation = [run["best_val_auc"] for runs in records.runs.values() for run in runs]
    verdict = ("made both models' outputs further from the truth on the test folder" if worse
               else "changed the outputs on the test folder")
    return (f"Calibrating on the validation images {verdict} (mean over replicates: {changes}). The validation images "
            f"are ranked almost perfectly (ROC-AUC of the saved epochs {number(min(validation))}–"
            f"{number(max(validation))}), so the fit stretches the score.")


def caveats_section(records: CardRecords) -> str:
    """Ethical considerations, known failure modes and recommendations, with their numbers."""
    feature_maps = ", ".join(f"{title_of(arch)} {runs[0]['config']['image_size'] // 32}×"
                             f"{runs[0]['config']['image_size'] // 32}" for arch, runs in records.runs.items())
    return f"""## Ethical considerations

The images are of young children, published de-identified under CC BY 4.0 by their authors. A model used on
patients against this card's advice would do harm in both directions: a missed pneumonia delays treatment, and a
false alarm sends a healthy child to antibiotics or more imaging. The data come from one hospital in one country;
nothing here says how the models behave for other populations.

## Caveats and recommendations: known failure modes

- **False alarms.** {false_alarm_sentence(records)}
- **Retraining moves the operating point.** Across the replicates, {operating_point_sentence(records)}: the same
  recipe with another seed is another model.
- **Pneumonia subtypes.** Mean sensitivity per subtype: {subtype_sentence(records)}. In this copy the subtypes are
  also stored at different sizes, so a gap between them may be the size, not the disease.
- **Shortcuts.** Stored size and black border are tied to the label (above); the within-group table shows how each
  model does among images stored alike. Do not read the overall accuracy as what the models would reach where
  images are stored alike.
- **Neither output is P(PNEUMONIA).** {calibration_sentence(records)} Use the score to rank and the threshold to
  decide; read the `probability` as this card's calibration table says, not as a probability.
- **Errors the models share.** Notebook 4 shows, as images with their file names and scores, the test images both
  models get wrong in the most replicates and those they disagree on most: look there before trusting either.
- **The OOD flag is a smoke detector, not a guarantee.** The table above is all that was measured: one run, not
  of this study, on foreign images made for the test. It was never tried on X-rays of other body parts, from other
  hospitals, of adults or lateral views, nor on these models: a missing flag does not prove an image is like the
  training images.
- **Framing and exposure move the decisions, unflagged.** {records.stress_sentence} Measured once, on the `cpu`
  profile's seed-1 models (not this study's; `{repo_relative(stress.NOTE_FILE)}` has every shift): X-rays from
  another machine or technician differ in just these ways.
- **Small networks, small images.** Trained from scratch on a CPU at the image sizes in the recipe table; the
  published comparison used ImageNet weights at 224 px. At these sizes the last feature maps, which Grad-CAM
  explains, are {feature_maps} cells (this card has no Grad-CAM).
"""


def reflow(block: str) -> str:
    """A paragraph or list of the card wrapped at ``LINE_WIDTH`` (tables and headings as they are), so that
    interpolated numbers leave no ragged lines; words and hyphenated names are never split."""
    lines = block.splitlines()
    if not lines or lines[0].startswith(("|", "#")):
        return block
    items, current = [], []
    for line in lines:
        if line.startswith("- ") and current:
            items.append(current)
            current = []
        current.append(line.strip())
    items.append(current)
    wrapped = []
    for item in items:
        indent = "  " if item[0].startswith("- ") else ""
        wrapped.append(textwrap.fill(" ".join(item), LINE_WIDTH, subsequent_indent=indent, break_long_words=False,
                                     break_on_hyphens=False))
    return "\n".join(wrapped)


def model_card(records: CardRecords) -> str:
    """The whole card as Markdown."""
    text = "\n".join((header(records), details_section(records), intended_use_section(), factors_section(records),
                      metrics_section(records), analyses_section(records), caveats_section(records)))
    return "\n\n".join(reflow(block) for block in text.strip().split("\n\n")) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/MODEL_CARD.md from the records, or with --check report whether it is what they give."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib.report.model_card", description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=CARD_STUDY, help=f"the study whose models the card describes ({CARD_STUDY})")
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed card differs, write nothing")
    args = parser.parse_args(argv)
    try:
        card = model_card(read_records(args.study))
    except CardError as error:
        print(f"model card: {error}")
        return 1
    if args.check:
        same = CARD_FILE.is_file() and CARD_FILE.read_text() == card
        print(f"{repo_relative(CARD_FILE)} {'is' if same else 'is not'} what the records give"
              + ("" if same else ": run python -m cxrlib.report.model_card"))
        return 0 if same else 1
    CARD_FILE.write_text(card)
    print(f"wrote {repo_relative(CARD_FILE)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
