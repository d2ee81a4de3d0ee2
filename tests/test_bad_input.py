"""Property-based sweep: arbitrary text never crashes the parser, and bad files fail clearly."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aims_kit.datasets import aims as data
from aims_kit.datasets import formats
from aims_kit.datasets.aims import AimsDataError

LABEL_WORDS = st.sampled_from(["harmful", "safe", "unharmful", "unsafe", "benign", "Harmful", "SAFE"])


@given(st.text())
def test_parser_never_crashes_and_always_yields_a_scorable_label(text):
    parsed = formats.parse_output(text)
    assert parsed.label in (None, "harmful", "safe")
    assert parsed.label_or_rule() in formats.LABELS


@given(st.text(max_size=200).filter(lambda s: "harm" not in s.lower() and "<think>" not in s.lower()), LABEL_WORDS)
def test_a_final_labelled_field_wins_whatever_comes_before(prefix, word):
    parsed = formats.parse_output(f"{prefix}\nHarm: {word}")
    expected = "safe" if word.lower() in ("safe", "unharmful", "benign") else "harmful"
    assert parsed.label == expected


@given(st.text(min_size=1).filter(lambda s: s.strip()), st.sampled_from(formats.LABELS))
def test_intent_targets_round_trip_for_arbitrary_intents(intent, label):
    text = formats.format_target("intent_label", label, intent=intent)
    assert formats.parse_output(text).label == label


def _frame(prompts, intents, harms, adversarial):
    n = len(prompts)
    return pd.DataFrame({
        "ID": [str(i) for i in range(n)],
        "Wildguard ID": [""] * n,
        "Duplicate ID": [""] * n,
        "Prompt": prompts,
        "Intent": intents,
        "Annotator Harm": harms,
        "Dataset Harm": ["harmful"] * n,
        "Adversarial": adversarial,
    })


HARMS = st.sampled_from([*data.HARM_MAP, data.FLAG, "", "harmful", "Completely harmful", None, 3])
CELLS = st.one_of(st.text(max_size=50), st.none(), st.integers(), st.floats(allow_nan=True))


@pytest.mark.filterwarnings("ignore::aims_kit.datasets.aims.AimsDataWarning")
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(CELLS, CELLS, HARMS, st.sampled_from([True, False, "True", "no", "maybe", None])), min_size=1, max_size=12))
def test_validation_either_accepts_or_names_row_and_field(rows):
    prompts, intents, harms, adversarial = map(list, zip(*rows))
    frame = _frame(prompts, intents, harms, adversarial)
    try:
        clean = data.validate(frame, "generated.csv")
    except AimsDataError as err:
        assert err.source == "generated.csv" and err.row is not None and 1 <= err.row <= len(rows)
        assert err.field in data.REQUIRED_COLUMNS
        return
    # an empty label or intent is skipped and reported (the paper's filter), never silently
    flagged = [h == data.FLAG for h in harms]
    skipped = [i + 1 for i, (h, intent) in enumerate(zip(harms, intents)) if _blank(h) or (h != data.FLAG and _blank(intent))]
    assert [e["row"] for e in clean.attrs["skipped_rows"]] == skipped
    assert len(clean) == len(rows) - sum(flagged) - len(skipped) and clean.attrs["n_flagged"] == sum(flagged)
    assert set(clean["label"]) <= {"harmful", "safe"}
    assert (clean["Prompt"].str.strip() != "").all() and (clean["Intent"].str.strip() != "").all()


def _blank(value) -> bool:
    return data.is_missing(value) or not str(value).strip()


def test_duplicate_ids_are_an_error_not_a_silent_drop():
    frame = _frame(["a", "b"], ["x", "y"], ["Completely Safe"] * 2, [False, False])
    frame["ID"] = ["7", "7"]
    with pytest.raises(AimsDataError, match="duplicate ID '7'.*row 1"):
        data.validate(frame, "f.csv")


def test_huge_prompts_load_unchanged():
    big = "word " * 50_000
    clean = data.validate(_frame([big], ["The user wants x."], ["Completely Safe"], [False]), "f.csv")
    assert clean.loc[0, "Prompt"] == big
