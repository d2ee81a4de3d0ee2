"""The results page (``report --markdown``, docs/results.md and docs/study.md) names its machine and times and shows
the scoreboard, the power table and claim 5's controlled timing, from the run folder alone."""

import pytest
from test_claims import _id, _preds, _run

from aims_kit.core import results
from aims_kit.evaluation import claims, latency
from aims_kit.notebook import report


@pytest.fixture()
def folder(tmp_path):
    out = tmp_path / "run-study-x"
    intent = _run(out, "sft", "intent_label", datasets={"aims_test": _preds(100), "bench:xstest": _preds(90)}, ms=300,
                  created="2026-01-01T00:00:01")
    label = _run(out, "sft", "label_only", datasets={"aims_test": _preds(80), "bench:xstest": _preds(70)}, ms=30,
                 created="2026-01-01T00:00:02")
    results.atomic_write_json(out / "parameters.json", {"profile": "study", "model": "m", "seed": 22})
    results.atomic_write_json(out / "status.json", {"completed": ["02_sft.ipynb"], "seconds": {"02_sft.ipynb": 754.0},
                                                    "machines": ["CPU Test Xeon, 2 cores, 24 GiB RAM, AMX"]})
    timing = {"median": 100.0, "min": 90.0, "max": 110.0, "repeats": [90.0, 100.0, 110.0]}
    results.atomic_write_json(out / latency.LATENCY_FILE, {
        "method": latency.METHOD, "prompts": {"aims_test": 16, "bench:xstest": 16}, "repeats": 3, "batch_size": 32,
        "runs": {_id(run): {"aims_test": timing, "bench:xstest": timing} for run in (intent, label)}})
    claims.write_claims(out, claims.EXTERNAL_MEAN)
    return out


def test_the_page_names_machine_time_headlines_power_and_the_controlled_timing(folder):
    page = report.markdown_report(folder)
    assert "- machine: CPU Test Xeon, 2 cores, 24 GiB RAM, AMX; scored on" in page
    assert "| 02_sft.ipynb | 12:34 |" in page
    assert "### Power" in page and "## Claim 5's latencies: one controlled measurement" in page
    assert "3 passes over 16 aims_test, 16 xstest prompts" in page
    assert "[headline: external mean]" in page  # the study's headlines, named in advance, survive onto the page
    assert "profile: `study`" in page


def test_the_page_puts_the_machines_speed_beside_each_notebooks_time(folder):
    status = results.read_json(folder / "status.json")
    status["completed"].append("06_eval.ipynb")
    status["seconds"]["06_eval.ipynb"] = 530.0
    status["matmul_gflops"] = {"02_sft.ipynb": 421.0, "06_eval.ipynb": 378.0}
    results.atomic_write_json(folder / "status.json", status)
    page = report.markdown_report(folder)
    assert "| notebook | time | matmul GFLOP/s before it |" in page
    assert "| 02_sft.ipynb | 12:34 | 421 |" in page and "| 06_eval.ipynb | 8:50 | 378 |" in page
    assert "read 378-421 GFLOP/s" in page


def test_a_run_that_recorded_no_machine_says_so(folder):
    status = results.read_json(folder / "status.json")
    del status["machines"]
    results.atomic_write_json(folder / "status.json", status)
    assert "not recorded by the run (the report runs on: " in report.markdown_report(folder)


def test_the_page_says_where_the_folder_departs_from_its_profile(folder):
    from aims_kit.core.profiles import PROFILES

    parameters = {**PROFILES["study"], "profile": "study", "seeds": [23]}
    results.atomic_write_json(folder / "parameters.json", parameters)
    page = report.markdown_report(folder)
    assert "`seeds` [23] (profile: [])" in page
    assert "notebooks not run in this folder: 01_explore_data, 03_dpo" in page  # only 02 completed here
