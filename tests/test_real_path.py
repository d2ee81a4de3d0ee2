"""The real-model path, reproduced offline: hub splits, chat templates with thinking blocks, vLLM
engine reuse, benchmark conventions and fallbacks, truncation, bad input (issue 12)."""

import json

import pandas as pd
import pytest

from aims_kit import data, experiments
from aims_kit.__main__ import main


# ---------------------------------------------------------------- 1. the source's own splits


def hub_layout(folder, sizes):
    """A folder laid out like the hub repo: one parquet file per split under ``data/``."""
    raw = data.read_table(None)[0]
    raw = raw[raw["Annotator Harm"] != data.FLAG].reset_index(drop=True)
    (folder / "data").mkdir(parents=True)
    start, ids = 0, {}
    for split, n in sizes.items():
        part = raw.iloc[start:start + n]
        part.to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", index=False)
        ids[split] = set(part["ID"].astype(str))
        start += n
    return ids


def test_dataset_folder_keeps_its_train_validation_test_splits(tmp_path, capsys):
    ids = hub_layout(tmp_path / "aims", {"train": 40, "validation": 8, "test": 6})
    splits = experiments.load_splits(str(tmp_path / "aims"), seed=5)
    assert splits.from_source and splits.sizes() == {"train": 40, "val": 8, "test": 6}
    assert set(splits.test["ID"]) == ids["test"] and set(splits.val["ID"]) == ids["validation"]
    assert set(splits.train["split"]) == {"train"} and set(splits.val["split"]) == {"val"}
    assert list(experiments.load_splits(str(tmp_path / "aims"), seed=6).test["ID"]) == list(splits.test["ID"])

    assert main(["data", "check", str(tmp_path / "aims")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"] == {"train": 40, "val": 8, "test": 6} and "own" in report["splits_from"]
    assert report["rows"] == 54


def test_single_split_folder_is_re_split_and_bad_split_sets_are_named(tmp_path):
    hub_layout(tmp_path / "one", {"train": 60})
    splits = experiments.load_splits(str(tmp_path / "one"))
    assert not splits.from_source and sum(splits.sizes().values()) == 60 and splits.sizes()["test"] == 6
    hub_layout(tmp_path / "two", {"train": 20, "test": 5})
    with pytest.raises(data.AimsDataError, match=r"splits \['test', 'train'\].*train, validation and test"):
        data.load_aims(tmp_path / "two")


def test_a_bad_row_in_a_source_split_names_the_split_and_row(tmp_path):
    hub_layout(tmp_path / "aims", {"train": 10, "validation": 4, "test": 4})
    path = tmp_path / "aims" / "data" / "test-00000-of-00001.parquet"
    frame = pd.read_parquet(path)
    frame.loc[2, "Annotator Harm"] = "Somewhat Bad"
    frame.to_parquet(path, index=False)
    with pytest.raises(data.AimsDataError, match=r"\[test\], row 3, field 'Annotator Harm'"):
        data.load_aims(tmp_path / "aims")
