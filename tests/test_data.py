import pandas as pd
import pytest

from aims_kit.datasets import aims as data
from aims_kit.datasets.aims import AimsDataError

COLUMNS = list(data.REQUIRED_COLUMNS)


def make_rows(n=40, overrides=None):
    rows = []
    for i in range(n):
        harmful = i % 2 == 0
        rows.append({
            "ID": str(i + 1),
            "Wildguard ID": "",
            "Duplicate ID": "",
            "Prompt": f"prompt number {i} about topic {i % 7}",
            "Intent": f"The user wants thing {i}.",
            "Annotator Harm": "Completely Harmful" if harmful else "Uncertain Safe",
            "Dataset Harm": "harmful" if harmful else "unharmful",
            "Adversarial": "False",
        })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for (row, column), value in (overrides or {}).items():
        frame.loc[row, column] = value
    return frame


def write(tmp_path, frame, suffix=".csv"):
    path = tmp_path / f"aims{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_local_files_load_and_map_labels(tmp_path, suffix):
    frame = make_rows()
    frame.loc[3, "Annotator Harm"] = "Flag for Removal"
    loaded = data.load_aims(write(tmp_path, frame, suffix))
    assert len(loaded) == 39 and loaded.attrs["n_flagged"] == 1
    assert set(loaded["label"]) == {"harmful", "safe"}
    assert loaded.loc[loaded["ID"] == "1", "label"].item() == "harmful"
    assert loaded.loc[loaded["ID"] == "2", "label"].item() == "safe"


def test_missing_column_names_file_and_field(tmp_path):
    path = write(tmp_path, make_rows().drop(columns=["Intent"]))
    with pytest.raises(AimsDataError) as err:
        data.load_aims(path)
    assert str(path) in str(err.value) and "'Intent'" in str(err.value)


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("Prompt", "   ", "empty prompt"),
        ("Annotator Harm", "Somewhat Bad", "unknown label"),
        ("Adversarial", "maybe", "not a boolean"),
        ("ID", "1", "duplicate ID"),
    ],
)
def test_bad_rows_name_row_and_field(tmp_path, column, value, message):
    path = write(tmp_path, make_rows(overrides={(4, column): value}))
    with pytest.raises(AimsDataError) as err:
        data.load_aims(path)
    text = str(err.value)
    assert message in text and "row 5" in text and f"field '{column}'" in text and str(path) in text


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_rows_with_an_empty_label_or_intent_are_skipped_and_reported_by_id(tmp_path, suffix):
    """The paper's loaders filter them; the kit does too, never silently (it used to be an error)."""
    frame = make_rows(overrides={(4, "Intent"): "  ", (9, "Annotator Harm"): "", (12, "Intent"): None})
    path = write(tmp_path, frame, suffix)
    with pytest.warns(data.AimsDataWarning) as caught:
        loaded = data.load_aims(path)
    assert len(loaded) == 37 and not {"5", "10", "13"} & set(loaded["ID"])
    skipped = {(e["id"], e["field"], e["row"]) for e in loaded.attrs["skipped_rows"]}
    assert skipped == {("5", "Intent", 5), ("10", "Annotator Harm", 10), ("13", "Intent", 13)}
    message = str(caught[0].message)
    assert str(path) in message and "skipped 3 row(s)" in message and "IDs 5, 13" in message and "ID 10" in message
    assert [e["id"] for e in data.summary(loaded)["skipped_empty_label_or_intent"]] == ["5", "10", "13"]


def test_a_clean_file_skips_nothing_and_warns_nothing(tmp_path, recwarn):
    loaded = data.load_aims(write(tmp_path, make_rows()))
    assert loaded.attrs["skipped_rows"] == [] and not [w for w in recwarn if w.category is data.AimsDataWarning]


def test_flagged_rows_may_have_empty_text(tmp_path):
    frame = make_rows(overrides={(2, "Annotator Harm"): "Flag for Removal", (2, "Prompt"): "", (2, "Intent"): ""})
    assert len(data.load_aims(write(tmp_path, frame))) == 39


def test_unreadable_and_missing_files_are_clear(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(AimsDataError, match="could not be read"):
        data.load_aims(bad)
    with pytest.raises(AimsDataError, match="no such file"):
        data.load_aims(tmp_path / "nothing.csv")
    with pytest.raises(AimsDataError, match="unsupported file type"):
        (tmp_path / "x.txt").write_text("hi")
        data.load_aims(tmp_path / "x.txt")


def test_hub_failure_is_reported_without_a_deep_trace(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(AimsDataError, match="Jazhyc/aims-safety-intents.*hub"):
        data.load_aims("Jazhyc/aims-safety-intents")


def test_split_keeps_duplicates_in_train_and_no_prompt_in_two_splits():
    frame = make_rows(200)
    # two duplicate groups: same prompt, shared Duplicate ID; one unmarked repeat of a prompt
    for i, group in ((10, "1"), (11, "1"), (20, "2"), (21, "2")):
        frame.loc[i, "Duplicate ID"] = group
    frame.loc[11, "Prompt"] = frame.loc[10, "Prompt"]
    frame.loc[21, "Prompt"] = frame.loc[20, "Prompt"]
    frame.loc[31, "Prompt"] = frame.loc[30, "Prompt"].upper()
    loaded = data.validate(frame, "memory")
    splits = data.split_aims(loaded, seed=1)
    assert splits.sizes() == {"train": 160, "val": 20, "test": 20}
    prompts = {name: set(getattr(splits, name)["Prompt"].str.lower()) for name in data.SPLITS}
    assert not prompts["train"] & prompts["val"] and not prompts["train"] & prompts["test"] and not prompts["val"] & prompts["test"]
    for i in (10, 11, 20, 21, 30, 31):
        assert str(i + 1) in set(splits.train["ID"])
    for name in ("val", "test"):
        part = getattr(splits, name)
        assert set(part["split"]) == {name}
        assert part["label"].value_counts().to_dict() == {"harmful": 10, "safe": 10}


def test_split_is_seeded():
    loaded = data.validate(make_rows(100), "memory")
    a, b, c = (data.split_aims(loaded, seed=s) for s in (5, 5, 6))
    assert list(a.test["ID"]) == list(b.test["ID"])
    assert list(a.test["ID"]) != list(c.test["ID"])


def test_stratified_sample_is_seeded_and_keeps_the_label_share():
    frame = pd.DataFrame({"Prompt": [f"p{i}" for i in range(100)], "label": ["harmful"] * 40 + ["safe"] * 60})
    a, b = data.stratified_sample(frame, 20, seed=1), data.stratified_sample(frame, 20, seed=1)
    assert a.equals(b) and len(a) == 20 and (a["label"] == "harmful").sum() == 8
    assert data.stratified_sample(frame, 0) is frame


def test_balanced_head_takes_the_first_rows_of_each_label():
    frame = pd.DataFrame({"Prompt": [f"p{i}" for i in range(10)], "label": ["harmful"] * 3 + ["safe"] * 7})
    out = data.balanced_head(frame, 4)
    assert list(out["Prompt"]) == ["p0", "p1", "p3", "p4"]
    assert data.balanced_head(frame, 0) is frame and data.balanced_head(frame, 10) is frame


def test_balanced_sample_spreads_over_the_frame_with_equal_rows_per_label():
    # grouped like the train split (a source file's order): a head would take category "a" only
    frame = pd.DataFrame({"Prompt": [f"p{i}" for i in range(200)], "label": ["harmful", "safe"] * 100,
                          "category": ["a"] * 100 + ["b"] * 100})
    out = data.balanced_sample(frame, 40, seed=3)
    assert out["label"].value_counts().to_dict() == {"harmful": 20, "safe": 20}
    assert set(out["category"]) == {"a", "b"}
    assert out.equals(data.balanced_sample(frame, 40, seed=3)) and not out.equals(data.balanced_sample(frame, 40, seed=4))
    assert data.balanced_sample(frame, 0, seed=3) is frame
