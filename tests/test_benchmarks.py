"""Benchmark registry and loaders: every fixture in its upstream format, bad files, label rules."""

import json

import pandas as pd
import pytest

from aims_kit.datasets import benchmarks
from aims_kit.datasets import registry as benchmark_registry
from aims_kit.datasets.aims import AimsDataError, SplitHygieneError, require_split
from aims_kit.datasets.benchmarks import BenchmarkError

EXPECTED = {  # (rows with a known label, harmful rows, unknown rows skipped) of the kit's fixtures
    "wildguardtest": (12, 6, 1),
    "xstest": (12, 6, 0),
    "toxicchat": (12, 6, 0),
    "aegis2": (12, 6, 0),
    "openai_moderation": (12, 6, 0),  # a missing flag is "not set", as in every published table
    "simplesafetytests": (6, 6, 0),
    "harmbench": (6, 6, 0),
    "jailbreakbench": (12, 6, 0),
}


def test_registry_covers_the_eight_benchmarks_and_the_paper_five():
    assert set(benchmarks.REGISTRY) == set(EXPECTED)
    assert set(benchmark_registry.PAPER_FIVE) == {"wildguardtest", "xstest", "toxicchat", "aegis2", "openai_moderation"}
    for bench in benchmarks.REGISTRY.values():
        assert bench.hub_id and bench.licence and bench.upstream and bench.fixture and bench.local_names


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_loader_reads_its_fixture(name):
    frame = benchmarks.load_fixture(name)
    rows, harmful, unknown = EXPECTED[name]
    assert len(frame) == rows and (frame["label"] == "harmful").sum() == harmful
    assert frame.attrs["n_unknown"] == unknown
    assert set(frame["label"]) <= {"harmful", "safe"}
    assert set(frame["split"]) == {f"benchmark:{name}"}
    assert frame["ID"].is_unique and frame["Prompt"].str.len().min() > 0
    with pytest.raises(SplitHygieneError):
        require_split(frame, "val", "early stopping")


def test_slice_columns_are_kept():
    assert {"type", "Category"} <= set(benchmarks.load_fixture("xstest").columns)
    wildguard = benchmarks.load_fixture("wildguardtest")
    assert wildguard["Adversarial"].dtype == bool and wildguard["Adversarial"].any() and not wildguard["Adversarial"].all()
    assert benchmarks.load_fixture("toxicchat")["Adversarial"].any()


def test_label_mappings(tmp_path):
    xs = tmp_path / "xstest_prompts.csv"
    pd.DataFrame({"id": [1, 2], "prompt": ["a", "b"], "type": ["t", "t"], "label": ["unsafe", "safe"],
                  "focus": ["", ""], "note": ["", ""]}).to_csv(xs, index=False)
    assert benchmarks.load_benchmark("xstest", xs)["label"].tolist() == ["harmful", "safe"]
    wg = tmp_path / "wg.jsonl"
    wg.write_text("\n".join(json.dumps({"prompt": p, "prompt_harm_label": l}) for p, l in [("a", "unharmful"), ("b", "harmful")]))
    # "unharmful" must never be read as containing "harmful"
    assert benchmarks.load_benchmark("wildguardtest", wg)["label"].tolist() == ["safe", "harmful"]
    tc = tmp_path / "tc.csv"
    pd.DataFrame({"conv_id": ["x", "y"], "user_input": ["a", "b"], "toxicity": [1, 0]}).to_csv(tc, index=False)
    assert benchmarks.load_benchmark("toxicchat", tc)["label"].tolist() == ["harmful", "safe"]


def test_truncated_gzip_names_the_file(tmp_path):
    good = (benchmarks.FIXTURES_DIR / "samples-1680.jsonl.gz").read_bytes()
    bad = tmp_path / "samples-1680.jsonl.gz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(BenchmarkError, match="samples-1680.jsonl.gz.*truncated"):
        benchmarks.load_benchmark("openai_moderation", bad)


def test_truncated_jsonl_names_the_line(tmp_path):
    path = tmp_path / "aegis.jsonl"
    path.write_text('{"prompt": "a", "prompt_label": "safe"}\n{"prompt": "b", "prompt_la')
    with pytest.raises(BenchmarkError, match=r"aegis.jsonl, row 2.*line 2"):
        benchmarks.load_benchmark("aegis2", path)


def test_missing_columns_and_unknown_labels_are_clear_errors(tmp_path):
    path = tmp_path / "x.csv"
    pd.DataFrame({"id": [1], "text": ["a"], "label": ["safe"]}).to_csv(path, index=False)
    with pytest.raises(BenchmarkError, match=r"x.csv.*missing prompt column.*\['prompt'\]"):
        benchmarks.load_benchmark("xstest", path)
    pd.DataFrame({"id": [1, 2], "prompt": ["a", "b"], "label": ["safe", "maybe"]}).to_csv(path, index=False)
    with pytest.raises(BenchmarkError, match=r"x.csv, row 2, field 'label': unknown label 'maybe'") as err:
        benchmarks.load_benchmark("xstest", path)
    assert isinstance(err.value, AimsDataError) and err.value.row == 2
    pd.DataFrame({"id": [1], "prompt": ["a"]}).to_csv(path, index=False)
    with pytest.raises(BenchmarkError, match="no label column"):
        benchmarks.load_benchmark("xstest", path)
    with pytest.raises(BenchmarkError, match="no such file"):
        benchmarks.load_benchmark("xstest", tmp_path / "absent.csv")


def test_empty_label_is_unknown_and_counted_but_an_empty_prompt_is_an_error(tmp_path):
    path = tmp_path / "wg.csv"
    pd.DataFrame({"prompt": ["a", "b"], "prompt_harm_label": ["harmful", ""]}).to_csv(path, index=False)
    frame = benchmarks.load_benchmark("wildguardtest", path)
    assert len(frame) == 1 and frame.attrs["n_unknown"] == 1
    pd.DataFrame({"prompt": ["a", " "], "prompt_harm_label": ["harmful", "harmful"]}).to_csv(path, index=False)
    with pytest.raises(BenchmarkError, match="row 2, field 'prompt': empty prompt"):
        benchmarks.load_benchmark("wildguardtest", path)


def test_format_is_detected_from_content_not_the_name(tmp_path):
    frame = benchmarks.load_fixture("xstest")
    parquet = tmp_path / "export.dat"
    pd.read_csv(benchmarks.FIXTURES_DIR / "xstest_prompts.csv").to_parquet(parquet)
    assert benchmarks.load_benchmark("xstest", parquet)["label"].tolist() == frame["label"].tolist()


def test_discover_prefers_local_then_falls_back_and_says_why(tmp_path):
    folder = tmp_path / "mine"
    (folder / "xstest").mkdir(parents=True)
    (folder / "xstest" / "xstest_prompts.csv").write_bytes((benchmarks.FIXTURES_DIR / "xstest_prompts.csv").read_bytes())
    found = {f.name: f for f in benchmarks.discover(["xstest", "harmbench"], sources=["local", "fixture"], benchmark_paths=[str(folder)])}
    assert found["xstest"].kind == "local" and found["xstest"].dataset == "bench:xstest"
    assert found["harmbench"].kind == "fixture" and found["harmbench"].dataset == "fixture:harmbench"
    assert "not a real benchmark" in found["harmbench"].note and "no local file" in found["harmbench"].note
    skipped = benchmarks.discover(["harmbench"], sources=["local"], benchmark_paths=[str(folder)])[0]
    assert skipped.kind == "skipped" and skipped.frame is None and str(folder) in skipped.note


def test_openai_moderation_ships_with_the_kit_as_published_with_its_licence():
    """Found with no --path (the shipped file), read with the published convention: 1,680 rows, 522 harmful."""
    path = benchmarks.find_local("openai_moderation", benchmarks.search_dirs())
    assert path is not None and path.is_relative_to(benchmarks.SHIPPED_DIR)
    assert "MIT License" in (path.parent / "LICENSE").read_text()
    frame = benchmarks.load_benchmark("openai_moderation", path)
    assert len(frame) == 1680 and int((frame["label"] == "harmful").sum()) == 522
