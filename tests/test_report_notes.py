"""The report says what its numbers can mean for the model that was trained, escaped."""

from aims_kit.core import results
from aims_kit.notebook import report


def test_the_note_names_the_model_and_what_its_numbers_are(tmp_path):
    assert "format but never the decision" in report.model_note("tiny-random")
    assert "not the paper's results" in report.model_note("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "Qwen/Qwen3-0.6B" in report.model_note("Qwen/Qwen3-0.6B")


def test_a_hostile_model_name_is_escaped_in_the_report(tmp_path):
    run = results.create_run(tmp_path, "sft-label_only", {"regime": "sft", "condition": "label_only", "model": "m", "seed": 22})
    metrics = {"f1": 0.5, "f1_ci_low": 0.4, "f1_ci_high": 0.6, "f1_flag_all": 0.6, "f1_flag_none": 0.0,
               "parse_failure_rate": 0.0, "ms_per_prompt": 1.0, "tokens_per_prompt": 1.0, "n": 10,
               "device": "cpu", "dtype": "float32", "batch_size": 1, "backend": "transformers"}
    results.write_record(run, "aims_test", metrics, [])
    page = report.write_report(tmp_path, {"model": "<script>alert(1)</script>"}).read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_results_page_keeps_a_dirty_trees_mark():
    from aims_kit.notebook.report import _short_commit

    assert _short_commit("0123456789abcdef0123+dirty") == "0123456789ab+dirty"
    assert _short_commit("0123456789abcdef0123") == "0123456789ab"
