"""Issue 41: tables that say something: slices with enough prompts (the rest counted), seeds only where there are several."""

import json

import pandas as pd
from test_claims import GOLD, _preds, _run

from aims_kit.core import results
from aims_kit.datasets.benchmarks import Found
from aims_kit.evaluation import benchmarks as benchmark_eval
from aims_kit.notebook import prose

XSTEST = Found(name="xstest", kind="local", source="test", frame=pd.DataFrame({"label": GOLD}), note="")


def _typed(run, sizes: dict[str, int]):
    """Give the run's XSTest predictions a ``type`` column with the slice sizes ``sizes``."""
    file = run / "predictions" / "bench:xstest.jsonl"
    types = [name for name, n in sizes.items() for _ in range(n)]
    rows = [json.loads(line) for line in file.read_text().splitlines()]
    file.write_text("".join(json.dumps({**row, "type": t}) + "\n" for row, t in zip(rows, types)))


def test_slice_table_keeps_slices_of_20_prompts_and_counts_the_rest(tmp_path):
    sizes = {"homonyms": 60, "contrast_homonyms": 30, **{f"tiny{i}": 10 for i in range(3)}}
    assert sum(sizes.values()) == len(GOLD)
    runs = [_run(tmp_path, "sft", c, datasets={"bench:xstest": _preds(90)}) for c in ("intent_label", "label_only")]
    for run in runs:
        _typed(run, sizes)
    table = benchmark_eval.slice_table(runs, [XSTEST], "xstest", "type")
    assert sorted(set(table["type"])) == ["contrast_homonyms", "homonyms"] and len(table) == 4  # 2 slices × 2 runs
    assert table.attrs["left_out"] == {"benchmark": "xstest", "column": "type", "slices": 3, "prompts": 30,
                                       "min_prompts": 20, "kept": 2}
    line = prose.slices_left_out(table).data
    assert "3 xstest `type` slices with fewer than 20 prompts (30 prompts in all) are left out" in line
    assert "2 slices with at least 20 prompts per run are shown" in line
    assert prose.slices_left_out("xstest was not evaluated").data == "xstest was not evaluated"


def test_seed_table_only_where_an_experiment_has_several_seeds(tmp_path):
    one = tmp_path / "one"
    _run(one, "sft", "intent_label", datasets={"bench:xstest": _preds(90)})
    _run(one, "sft", "label_only", datasets={"bench:xstest": _preds(80)})
    assert benchmark_eval.seed_table(results.load_records(one)) is None  # no "± 0.000" rows
    _run(one, "sft", "intent_label", datasets={"bench:xstest": _preds(70)}, seed=23)
    table = benchmark_eval.seed_table(results.load_records(one))
    assert len(table) == 1 and table.loc[0, "condition"] == "intent_label" and table.loc[0, "n_seeds"] == 2
