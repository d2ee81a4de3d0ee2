"""Hub-shaped data loads as the paper's loaders load it: rows with an empty label or intent are
skipped and reported by ID, never silently; malformed values stay errors naming the row (issue #37, 9)."""

import json
import warnings

import pandas as pd
import pytest

from aims_kit.__main__ import main
from aims_kit.datasets import aims as data


def hub_folder(folder, sizes, blanks):
    """One parquet file per split under ``data/``, as the hub repo lays it out; ``blanks`` maps
    ``(split, position)`` to the column emptied there (``None``, as the hub stores a missing value)."""
    raw = data.read_table(None)[0]
    raw = raw[raw["Annotator Harm"] != data.FLAG].reset_index(drop=True)
    (folder / "data").mkdir(parents=True)
    start, ids = 0, {}
    for split, n in sizes.items():
        part = raw.iloc[start:start + n].reset_index(drop=True).copy()
        for (where, position), column in blanks.items():
            if where == split:
                part.loc[position, column] = None if column == "Annotator Harm" else ""
                ids[(split, column, position)] = str(part.loc[position, "ID"])
        part.to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", index=False)
        start += n
    return ids


BLANKS = {("train", 3): "Intent", ("validation", 1): "Intent", ("test", 2): "Annotator Harm"}


def test_empty_intent_and_label_rows_are_skipped_and_reported_by_id(tmp_path):
    ids = hub_folder(tmp_path / "aims", {"train": 30, "validation": 8, "test": 6}, BLANKS)
    with pytest.warns(data.AimsDataWarning) as caught:
        frame = data.load_aims(tmp_path / "aims")
    assert len(caught) == 1, "one warning for the whole dataset, not one per split"
    message = str(caught[0].message)
    assert "skipped 3 row(s)" in message
    for (split, column, _), row_id in ids.items():
        assert f"{row_id} [{data.SOURCE_SPLIT_NAMES[split]}]" in message
    reported = {(e["id"], e["field"]) for e in frame.attrs["skipped_rows"]}
    assert reported == {(row_id, column) for (_, column, _), row_id in ids.items()}
    assert {e["source"] for e in frame.attrs["skipped_rows"]} == {
        f"{tmp_path / 'aims'} [{s}]" for s in ("train", "val", "test")}
    assert not set(ids.values()) & set(frame["ID"])

    splits = data.split_aims(frame)
    assert splits.from_source and splits.sizes() == {"train": 29, "val": 7, "test": 5}
    assert (splits.train["Intent"].str.strip() != "").all() and splits.test["label"].notna().all()


def test_data_check_lists_the_skipped_rows(tmp_path, capsys):
    ids = hub_folder(tmp_path / "aims", {"train": 20, "validation": 6, "test": 6}, BLANKS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.AimsDataWarning)
        assert main(["data", "check", str(tmp_path / "aims")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(e["id"] for e in report["skipped_empty_label_or_intent"]) == sorted(ids.values())
    assert report["rows"] == 29 and report["splits"] == {"train": 19, "val": 5, "test": 5}


def test_malformed_values_in_a_hub_split_stay_errors_naming_split_row_and_field(tmp_path):
    hub_folder(tmp_path / "aims", {"train": 10, "validation": 4, "test": 4}, {("train", 1): "Intent"})
    path = tmp_path / "aims" / "data" / "validation-00000-of-00001.parquet"
    part = pd.read_parquet(path)
    part.loc[2, "Adversarial"] = "maybe"
    part.to_parquet(path, index=False)
    with pytest.raises(data.AimsDataError, match=r"\[val\], row 3, field 'Adversarial'"):
        data.load_aims(tmp_path / "aims")


def test_a_split_left_empty_by_the_filter_is_named(tmp_path):
    hub_folder(tmp_path / "aims", {"train": 10, "validation": 2, "test": 4},
               {("validation", 0): "Intent", ("validation", 1): "Annotator Harm"})
    with pytest.warns(data.AimsDataWarning):
        frame = data.load_aims(tmp_path / "aims")
    with pytest.raises(data.AimsDataError, match=r"\['val'\] split\(s\) have no usable rows"):
        data.split_aims(frame)
