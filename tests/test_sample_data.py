"""Behavioural checks on the AIMS Kit teaching sample (CSV + reference traces)."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pandas as pd
import pytest

DATA = Path(__file__).parents[1] / "aims_kit/data/sample"
CSV = DATA / "aims_sample.csv"
TRACES = DATA / "reference_traces.jsonl"
XSTEST = Path(__file__).parents[2] / "shared/benchmarks/xstest/xstest_prompts.csv"

COLUMNS = ["ID", "Wildguard ID", "Duplicate ID", "Prompt", "Intent",
           "Annotator Harm", "Dataset Harm", "Adversarial", "Category"]
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
LEAK_PHRASES = ["the label", "labelled", "labeled", "given label", "gold", "annotat",
                "i was told", "as instructed", "provided answer", "ground truth"]
# Word-trigram Jaccard above this would mean a sample prompt shares most of its phrasing
# with an XSTest prompt; unrelated English sentences on the same topic sit well below it.
XSTEST_JACCARD_MAX = 0.5


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


def test_value_sets(df):
    assert set(df["Annotator Harm"]) == LEVELS  # all five levels present
    assert set(df["Dataset Harm"]) <= {"harmful", "unharmful"}
    assert set(df["Adversarial"]) <= {"True", "False"}
    assert set(df["Category"]) <= CATEGORIES


def test_harmful_share_balanced(kept):
    share = (kept["label"] == "harmful").mean()
    assert 0.45 <= share <= 0.55, share


def test_categories_cover_and_balanced(kept, df):
    assert set(df["Category"]) == CATEGORIES
    counts = df["Category"].value_counts()
    assert (counts >= 25).all(), counts
    for cat, grp in kept.groupby("Category"):
        assert set(grp["label"]) == {"harmful", "safe"}, cat


def test_adversarial_share(df):
    share = (df["Adversarial"] == "True").mean()
    assert 0.30 <= share <= 0.40, share
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
    words = df["Prompt"].str.split().str.len()
    assert words.between(8, 120).all(), df.loc[~words.between(8, 120), "Prompt"].tolist()


def test_intents_are_one_sentence(df):
    for intent in df["Intent"]:
        assert "\n" not in intent
        body = intent.rstrip(".")
        # at most one sentence-ending mark, and only at the end
        assert not re.search(r"[.!?]\s+[A-Z]", body), intent
        assert "?" not in body and "!" not in body, intent


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
    if not XSTEST.exists():
        pytest.skip(f"XSTest prompts not found at {XSTEST} (shared/ folder not beside the repo)")
    xs = pd.read_csv(XSTEST)["prompt"].astype(str).map(_norm).tolist()
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

def test_trace_coverage(traces, df):
    ids = {t["id"] for t in traces}
    assert len(ids) >= 440
    by_id = {}
    for t in traces:
        by_id.setdefault(t["id"], []).append(t["condition"])
    assert all(sorted(c) == ["human_intent", "no_intent"] for c in by_id.values())
    kept = df[df["Annotator Harm"] != "Flag for Removal"]
    cats = kept[kept["ID"].astype(int).isin(ids)]
    assert set(cats["Category"]) == CATEGORIES
    assert set(cats["Annotator Harm"].map(BINARY)) == {"harmful", "safe"}


def test_trace_rows_valid(traces, df):
    rows = df.set_index(df["ID"].astype(int))
    for t in traces:
        assert set(t) == {"id", "condition", "teacher", "reasoning", "intent", "label", "completion"}
        assert t["teacher"] == "aims-kit-reference-v1"
        assert t["id"] in rows.index
        row = rows.loc[t["id"]]
        assert row["Annotator Harm"] != "Flag for Removal"
        assert row["Duplicate ID"] == ""
        assert t["label"] == BINARY[row["Annotator Harm"]]
        r = t["reasoning"]
        if t["condition"] == "no_intent":
            assert t["intent"] is None
            assert t["completion"] == f"Reasoning: {r}\nPrompt harm: {t['label']}"
        else:
            assert t["condition"] == "human_intent"
            assert t["intent"] == row["Intent"]
            assert t["completion"] == (
                f"Reasoning: {r}\nIntent: {t['intent']}\nPrompt harm: {t['label']}")


def test_trace_reasoning_quality(traces):
    for t in traces:
        r = t["reasoning"]
        low = r.lower()
        for phrase in LEAK_PHRASES:
            assert phrase not in low, (phrase, r)
        assert 30 <= len(r.split()) <= 90, r
        assert "\n" not in r
    reasonings = [t["reasoning"] for t in traces]
    assert len(set(reasonings)) == len(reasonings)
