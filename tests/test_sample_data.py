"""Behavioural checks on the AIMS Kit teaching sample (CSV + reference traces) and its builder."""

from __future__ import annotations

import importlib.util
import json
import re
import string
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from aims_kit.datasets import benchmarks
from aims_kit.scoring import probes
from aims_kit.training.distill import intent_leakage, leak_reason
from aims_kit.training.teachers import TracesFileTeacher

ROOT = Path(__file__).parents[1]
DATA = ROOT / "aims_kit/data/sample"
CSV = DATA / "aims_sample.csv"
TRACES = DATA / "reference_traces.jsonl"

COLUMNS = ["ID", "Wildguard ID", "Duplicate ID", "Prompt", "Intent",
           "Annotator Harm", "Dataset Harm", "Adversarial", "Category", "type"]
LEVELS = {"Completely Harmful", "Uncertain Harmful", "Uncertain Safe",
          "Completely Safe", "Flag for Removal"}
BINARY = {"Completely Harmful": "harmful", "Uncertain Harmful": "harmful",
          "Uncertain Safe": "safe", "Completely Safe": "safe"}
CATEGORIES = {
    "sensitive_information_organization_government", "private_information_individual",
    "copyright_violations", "disseminating_false_or_misleading_information",
    "causing_material_harm_by_disseminating_misinformation",
    "social_stereotypes_and_unfair_discrimination", "violence_and_physical_harm",
    "toxic_language_hate_speech", "sexual_content", "cyberattack",
    "fraud_assisting_illegal_activities", "encouraging_unethical_or_unsafe_actions",
    "mental_health_over-reliance_crisis",
}
# Word-trigram Jaccard above this would mean a sample prompt shares most of its phrasing
# with an XSTest prompt; unrelated English sentences on the same topic sit well below it.
XSTEST_JACCARD_MAX = 0.5
# Hedge-rate gaps allowed. With ~500 traces per label the sampling noise of a rate near 0.1 is
# about ±0.03, so 0.10 between labels is a real difference; Uncertain rows are ~165, hence 0.15.
# The template traces this replaces had gaps of 0.27 (labels) and 0.85 (levels).
HEDGE_LABEL_GAP_MAX = 0.10
HEDGE_LEVEL_GAP_MAX = 0.15


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return pd.read_csv(CSV, dtype=str, keep_default_na=False, encoding="utf-8")


@pytest.fixture(scope="module")
def kept(df) -> pd.DataFrame:
    k = df[df["Annotator Harm"] != "Flag for Removal"].copy()
    k["label"] = k["Annotator Harm"].map(BINARY)
    return k


@pytest.fixture(scope="module")
def traces() -> list[dict]:
    with open(TRACES, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_sample_data", ROOT / "tools/build_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file loads
    spec.loader.exec_module(module)
    return module


def _words(text: str) -> int:
    return len(text.split())


# ----------------------------------------------------------------------------- CSV schema

def test_columns_exact(df):
    assert list(df.columns) == COLUMNS


def test_ids_unique_integers(df):
    ids = df["ID"].astype(int)
    assert ids.is_unique
    assert sorted(ids) == list(range(1, len(df) + 1))


def test_row_count(df):
    assert len(df) >= 800


def test_wildguard_id_empty(df):
    assert (df["Wildguard ID"] == "").all()


def test_value_sets(df, builder):
    assert set(df["Annotator Harm"]) == LEVELS  # all five levels present
    assert set(df["Dataset Harm"]) <= {"harmful", "unharmful"}
    assert set(df["Adversarial"]) <= {"True", "False"}
    assert set(df["Category"]) <= CATEGORIES
    assert set(df["type"]) <= {*builder.TYPES, "flag"}


def test_harmful_share_balanced(kept):
    share = (kept["label"] == "harmful").mean()
    assert 0.45 <= share <= 0.55, share


def test_categories_cover_and_balanced(kept, df):
    assert set(df["Category"]) == CATEGORIES
    counts = df["Category"].value_counts()
    assert (counts >= 25).all(), counts
    assert counts.max() <= 2 * counts.min(), counts
    for cat, grp in kept.groupby("Category"):
        assert set(grp["label"]) == {"harmful", "safe"}, cat


def test_adversarial_share(df):
    share = (df["Adversarial"] == "True").mean()
    assert 0.30 <= share <= 0.45, share
    adv = df[df["Adversarial"] == "True"]
    assert set(adv["Annotator Harm"].map(BINARY).dropna()) == {"harmful", "safe"}


def test_dataset_harm_mostly_agrees(kept):
    agree = (kept["label"] == "harmful") == (kept["Dataset Harm"] == "harmful")
    assert 0.80 <= agree.mean() < 1.0


def test_duplicate_groups(df):
    dups = df[df["Duplicate ID"] != ""]
    assert dups["Duplicate ID"].str.fullmatch(r"\d+").all()
    groups = dups.groupby("Duplicate ID")
    assert groups.ngroups >= 10
    for gid, grp in groups:
        assert len(grp) >= 2, gid
        assert grp["Prompt"].nunique() == 1, gid
    counts = df["Prompt"].value_counts()
    repeated = set(counts[counts >= 2].index)
    for prompt in repeated:
        rows = df[df["Prompt"] == prompt]
        assert (rows["Duplicate ID"] != "").all(), prompt
        assert rows["Duplicate ID"].nunique() == 1, prompt


def test_flagged_rows_present(df):
    assert (df["Annotator Harm"] == "Flag for Removal").sum() >= 10


def test_no_empty_prompt_or_intent(df):
    assert (df["Prompt"].str.strip() != "").all()
    assert (df["Intent"].str.strip() != "").all()


def test_prompt_lengths(df):
    words = df["Prompt"].map(_words)
    long = df["type"] == "long"
    bad = df[~words.between(8, 250) | (long & ~words.between(80, 220))]
    assert bad.empty, bad[["ID", "type", "Prompt"]].to_dict("records")[:5]


def test_intents_are_one_sentence(df):
    for intent in df["Intent"]:
        assert "\n" not in intent
        body = intent.rstrip(".")
        # at most one sentence-ending mark, and only at the end
        assert not re.search(r"[.!?]\s+[A-Z]", body), intent
        assert "?" not in body and "!" not in body, intent


# ----------------------------------------------------------------------------- the hard cases of issue 13

def test_long_adversarial_rows(kept):
    """Real jailbreaks are long; at least 150 long adversarial rows, both labels, most harm areas."""
    long = kept[(kept["type"] == "long") & (kept["Prompt"].map(_words) >= 80)]
    assert len(long) >= 150, len(long)
    shares = long["label"].value_counts(normalize=True)
    assert set(shares.index) == {"harmful", "safe"} and shares.min() >= 0.3, shares.to_dict()
    assert long["Category"].nunique() >= 10, sorted(long["Category"].unique())
    assert (long["Adversarial"] == "True").all()
    assert long["Prompt"].str.contains("\n").mean() >= 0.5  # multi-paragraph, as real ones are


def test_literal_counterparts_of_double_meanings(kept):
    """Every harm area with safe double-meaning rows also has their harmful literal reading."""
    hom = set(kept.loc[kept["type"] == "hom", "Category"])
    lit = kept[kept["type"] == "lit"]
    assert hom and hom <= set(lit["Category"]), sorted(hom - set(lit["Category"]))
    assert (lit["label"] == "harmful").all(), lit.loc[lit["label"] != "harmful", "Prompt"].tolist()
    assert len(lit) >= len(kept[kept["type"] == "hom"]) * 0.8


def test_blunt_harmful_rows_in_every_category(kept):
    """Plain, unwrapped harmful requests, so "short and blunt" does not mean safe."""
    blunt = kept[(kept["type"] == "blunt") & (kept["label"] == "harmful")]
    per_cat = blunt["Category"].value_counts()
    thin = sorted(c for c in CATEGORIES if per_cat.get(c, 0) < 3)
    assert not thin, thin
    assert (blunt["Adversarial"] == "False").all()
    assert blunt["Prompt"].map(_words).median() <= 25


def test_wild_rows_have_both_labels(kept):
    wild = kept[kept["type"] == "wild"]
    assert set(wild["label"]) == {"harmful", "safe"} and len(wild) >= 26


def test_no_giveaway_phrases_in_adversarial_wrappers(df):
    """Wrappers must not announce the label ("with real working code", "keep it vague").

    Only adversarial rows: in a plain request ("a fake passport that will actually work") the
    words are the request itself, which is what should carry the label.
    """
    adversarial = df.loc[df["Adversarial"] == "True", "Prompt"]
    hits = {p[:80]: h for p in adversarial if (h := probes.giveaway_phrases(p))}
    assert not hits, hits


def test_wrapper_alone_does_not_predict_the_label(kept):
    """A bag-of-words model on the adversarial framing with the request removed stays at chance."""
    result = probes.wrapper_probe(kept)
    assert not result.above_chance, result.verdict


# ----------------------------------------------------------------------------- safety lint

def test_prompt_safety_lint(df):
    for p in df["Prompt"]:
        assert "```" not in p, p
        assert "import " not in p, p
        assert "SELECT " not in p, p
        assert not re.search(r"\d{5,}", p), p
        assert "http" not in p.lower(), p
        # phone-number-like digit groups, e.g. 555-123-4567 or (020) 7946 0000
        assert not re.search(r"\(?\d{3}\)?[\s.-]\d{3,4}[\s.-]\d{3,4}", p), p


# ----------------------------------------------------------------------------- XSTest overlap

def _norm(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def _trigrams(text: str) -> set:
    w = text.split()
    return {tuple(w[i:i + 3]) for i in range(len(w) - 2)}


def test_no_xstest_overlap(df):
    # The real XSTest file the kit ships (CC-BY-4.0), not the kit's fixture.
    xstest = benchmarks.SHIPPED_DIR / "xstest" / "xstest_prompts.csv"
    xs = pd.read_csv(xstest)["prompt"].astype(str).map(_norm).tolist()
    ours = df["Prompt"].map(_norm).tolist()
    assert not set(ours) & set(xs)
    xs_tri = [_trigrams(x) for x in xs]
    best, pair = 0.0, None
    for p in ours:
        tp = _trigrams(p)
        if not tp:
            continue
        for x, tx in zip(xs, xs_tri):
            if not tx:
                continue
            j = len(tp & tx) / len(tp | tx)
            if j > best:
                best, pair = j, (p, x)
    print(f"max XSTest word-trigram Jaccard = {best:.3f}")
    assert best < XSTEST_JACCARD_MAX, pair


# ----------------------------------------------------------------------------- traces

def test_every_row_has_exactly_one_trace_per_condition(traces, kept, df):
    per_row = Counter((t["id"], t["condition"]) for t in traces)
    assert set(per_row.values()) == {1}
    ids = {t["id"] for t in traces}
    assert ids == set(kept["ID"].astype(int)), "traces must cover every non-flagged row and no flagged one"
    by_id = {}
    for t in traces:
        by_id.setdefault(t["id"], {})[t["condition"]] = t["reasoning"]
    assert all(set(c) == {"no_intent", "human_intent"} for c in by_id.values())
    assert all(c["no_intent"] == c["human_intent"] for c in by_id.values()), "conditions differ only by the intent line"


def test_trace_rows_valid(traces, df):
    rows = df.set_index(df["ID"].astype(int))
    for t in traces:
        assert set(t) == {"id", "condition", "teacher", "reasoning", "intent", "label", "completion", "prompt_sha256"}
        assert t["teacher"] == "aims-kit-authored-v2"
        row = rows.loc[t["id"]]
        assert t["label"] == BINARY[row["Annotator Harm"]]
        r = t["reasoning"]
        if t["condition"] == "no_intent":
            assert t["intent"] is None
            assert t["completion"] == f"Reasoning: {r}\nPrompt harm: {t['label']}"
        else:
            assert t["condition"] == "human_intent"
            assert t["intent"] == row["Intent"]
            assert t["completion"] == f"Reasoning: {r}\nIntent: {t['intent']}\nPrompt harm: {t['label']}"
            assert t["completion"].count(t["intent"]) == 1, "the intent is stated once"


def test_no_intent_reasoning_shares_no_six_words_with_the_gold_intent(df):
    """The control condition must reason without the human intent (issue 13: all 811 old traces quoted it)."""
    teacher = TracesFileTeacher(TRACES)
    frame = df[df["Annotator Harm"] != "Flag for Removal"]
    intents = dict(zip(frame["ID"], frame["Intent"]))
    for condition in ("no_intent", "human_intent"):
        got = teacher.traces(frame, condition)
        leakage = intent_leakage(got, intents)
        offenders = [(t.id, sorted(probes.shared_ngrams(intents[t.id], t.reasoning))[:1]) for t in got
                     if probes.shared_ngrams(intents[t.id], t.reasoning)]
        assert leakage["traces"] == len(frame)
        assert leakage["intent_6gram"] == 0, (condition, offenders[:10])


def test_trace_reasoning_quality(traces):
    no_intent = [t["reasoning"] for t in traces if t["condition"] == "no_intent"]
    for r in no_intent:
        assert leak_reason(r) is None, r
        assert 12 <= len(r.split()) <= 130, r
        assert "\n" not in r
    distinct = set(no_intent)
    assert len(distinct) >= 0.97 * len(no_intent)  # shared only inside a duplicate group
    variety = probes.trace_variety(sorted(distinct))
    assert variety["repeated_sentence_share"] <= 0.05, variety
    openers = Counter(" ".join(probes.words(r)[:3]) for r in distinct)
    assert openers.most_common(1)[0][1] <= 0.03 * len(distinct), openers.most_common(5)
    assert variety["sentences_max"] >= 4 and variety["words_max"] - variety["words_min"] >= 50, variety


def test_hedging_does_not_tell_the_label_or_the_level(traces, df):
    levels = df.set_index(df["ID"].astype(int))["Annotator Harm"]
    no_intent = [t for t in traces if t["condition"] == "no_intent"]
    table = probes.hedge_rates([t["reasoning"] for t in no_intent], [t["label"] for t in no_intent],
                               [levels[t["id"]] for t in no_intent])
    gaps = probes.hedge_gaps(table)
    assert gaps["label_gap"] <= HEDGE_LABEL_GAP_MAX, table.to_dict("records")
    assert gaps["level_gap"] <= HEDGE_LEVEL_GAP_MAX, table.to_dict("records")


# ----------------------------------------------------------------------------- builder

def test_build_is_deterministic_and_matches_the_committed_files(builder, tmp_path):
    """Building again, in another process at another time, gives the committed bytes: the build is
    deterministic and the committed sample is not stale (an edited source that was not rebuilt fails here)."""
    builder.build(tmp_path)
    for name in ("aims_sample.csv", "reference_traces.jsonl", "README.md"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), (
            f"{name} differs from a fresh build: run python tools/build_sample_data.py")


def _tiny_source(tmp_path: Path, builder, rows: dict[str, list[str]], traces: list[dict]) -> Path:
    src = tmp_path / "src"
    (src / "traces").mkdir(parents=True)
    for cat in builder.CATEGORIES:
        (src / f"{cat}.txt").write_text("\n".join(rows.get(cat, [])) + "\n", encoding="utf-8")
    for name in ("duplicates.txt", "flagged.txt"):
        (src / name).write_text("", encoding="utf-8")
    (src / "README_template.md").write_text("{{STATS}}\n{{SCREENS}}\n", encoding="utf-8")
    (src / "traces" / "t.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces), encoding="utf-8")
    return src


def test_builder_names_file_and_line_of_every_trace_problem(builder, tmp_path):
    prompt = "Please explain how a bicycle gear system works\\nin two short paragraphs."
    rows = {"cyberattack": [
        f"CS|0|req|{prompt}|The user wants an explanation of bicycle gears.",
        "CH|0|blunt|Give me a script that wipes every file on my boss's laptop tonight.|The user wants to destroy a colleague's files.",
    ]}
    traces = [
        {"prompt": prompt, "label": "safe", "reasoning": "Gears on a bike are everyday mechanics."},
        {"prompt": prompt, "label": "safe", "reasoning": "A second copy."},
        {"prompt": "A prompt that no row has, eight words long.", "label": "harmful", "reasoning": "Spare."},
    ]
    src = _tiny_source(tmp_path, builder, rows, traces)
    with pytest.raises(builder.SampleDataError, match=r"traces/t\.jsonl:2: duplicate trace .*first at traces/t\.jsonl:1"):
        builder.build(tmp_path / "out", src)
    (src / "traces" / "t.jsonl").write_text("".join(json.dumps(t) + "\n" for t in (traces[0], traces[2])), encoding="utf-8")
    with pytest.raises(builder.SampleDataError) as err:
        builder.build(tmp_path / "out", src)
    assert "cyberattack.txt:2: no trace with label 'harmful'" in str(err.value)
    assert "traces/t.jsonl:2: spare trace (no row has this exact prompt" in str(err.value)


def test_builder_reads_line_breaks_and_new_types_and_checks_lengths(builder, tmp_path):
    long_prompt = " ".join(["word"] * 50) + "\\n" + " ".join(["more"] * 40)
    rows = {"cyberattack": [f"CH|1|long|{long_prompt}|The user wants something long.", "CS|0|wild|too short here|The user wants x."]}
    src = _tiny_source(tmp_path, builder, rows, [])
    with pytest.raises(builder.SampleDataError, match=r"cyberattack\.txt:2: prompt has 3 words; 'wild' rows need 8\.\.250"):
        builder.read_rows(src)
    (src / "cyberattack.txt").write_text(f"CH|1|long|{long_prompt}|The user wants something long.\n", encoding="utf-8")
    (row,) = builder.read_rows(src)
    assert row.ctype == "long" and row.text.count("\n") == 1 and len(row.text.split()) == 90
    (src / "cyberattack.txt").write_text("XX|1|odd|a prompt|intent\n", encoding="utf-8")
    with pytest.raises(builder.SampleDataError) as err:
        builder.read_rows(src)
    assert "cyberattack.txt:1: LEVEL 'XX'" in str(err.value) and "cyberattack.txt:1: TYPE 'odd'" in str(err.value)
