"""`python -m aims_kit eval` on a fixture with the tiny random model, zero-shot runs, the encoder baseline, latency."""

import json

import pytest

from aims_kit.__main__ import main
from aims_kit.core import results
from aims_kit.core.params import BenchmarkParams
from aims_kit.datasets import benchmarks
from aims_kit.evaluation import benchmarks as benchmark_eval
from aims_kit.evaluation import runs
from aims_kit.models import lora
from aims_kit.notebook import experiments
from aims_kit.scoring import evaluate as evaluation
from aims_kit.scoring import stats

FAST = ["--max-new-tokens", "4", "--latency-sample", "2", "--n-boot", "50"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder with a random but non-zero LoRA adapter on the tiny random model (no training needed)."""
    from peft import get_peft_model

    from aims_kit.models import loading as models

    out = tmp_path_factory.mktemp("runs")
    run = results.create_run(out, "sft-intent_label", {"regime": "sft", "condition": "intent_label", "model": "tiny-random", "seed": 22})
    model, _ = models.load_model("tiny-random")
    adapter = get_peft_model(model, lora.LoraSettings(extra={"init_lora_weights": False}).to_peft())
    adapter.save_pretrained(str(run / "adapter"))
    return run


def test_eval_cli_on_a_fixture_writes_a_record_with_intervals_and_both_latencies(trained_run, capsys):
    path = benchmarks.FIXTURES_DIR / "xstest_prompts.csv"
    assert main(["eval", "--run", str(trained_run), "--benchmark", "xstest", "--path", str(path), *FAST]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["dataset"] == "fixture:xstest" and printed["n"] == 12 and "config" not in printed
    assert printed["f1_ci_low"] <= printed["f1"] <= printed["f1_ci_high"]
    assert printed["latency_n"] == 2 and printed["latency_p95_ms"] >= printed["latency_p50_ms"] > 0
    assert printed["ms_per_prompt"] > 0 and printed["device"] and printed["dtype"] and printed["backend"] == "transformers"
    stored = results.read_json(trained_run / "results" / "fixture:xstest.json")
    assert stored["f1"] == printed["f1"] and stored["benchmark"] == "xstest"
    predictions = benchmark_eval.run_predictions(trained_run, "fixture:xstest")
    assert len(predictions) == 12 and {"type", "Category"} <= set(predictions.columns)
    assert len(stats.slice_f1(predictions, "type")) == 6


def test_eval_cli_limit_and_errors(trained_run, capsys, tmp_path):
    path = benchmarks.FIXTURES_DIR / "jbb_behaviors.csv"
    assert main(["eval", "--run", str(trained_run), "--benchmark", "jailbreakbench", "--path", str(path), "--limit", "4", *FAST]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["n"] == 4 and printed["tp"] + printed["fn"] == 2 and printed["benchmark_limit"] == 4
    bad = tmp_path / "broken.csv"
    bad.write_text("id,text\n1,hello\n")
    assert main(["eval", "--run", str(trained_run), "--benchmark", "xstest", "--path", str(bad)]) == 1
    assert "broken.csv" in capsys.readouterr().err
    assert main(["eval", "--run", str(tmp_path), "--benchmark", "xstest", "--path", str(benchmarks.FIXTURES_DIR / "xstest_prompts.csv")]) == 1


def test_eval_cli_zero_shot_model_gets_its_own_run(tmp_path, capsys):
    path = benchmarks.FIXTURES_DIR / "samples-1680.jsonl.gz"
    code = main(["eval", "--model", "tiny-random", "--condition", "label_only", "--out", str(tmp_path),
                 "--benchmark", "openai_moderation", "--path", str(path), *FAST])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["regime"] == "zero_shot" and printed["n_unknown_skipped"] == 0 and printed["n"] == 12
    assert results.latest_run(tmp_path, regime="zero_shot") == results.find_runs(tmp_path)[0]
    with pytest.raises(SystemExit):
        main(["eval", "--model", "tiny-random", "--condition", "nonsense", "--benchmark", "xstest"])


def test_latency_sample_is_fixed_and_evenly_spread():
    assert evaluation.latency_sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert evaluation.latency_sample_indices(3, 16) == [0, 1, 2]
    assert evaluation.latency_sample_indices(10, 0) == []
    timed = []
    result = evaluation.single_request_latency(timed.append, 10, 3)
    assert timed == [0, 0, 4, 9]  # one untimed warm-up call, then the sample
    assert result["latency_n"] == 3 and result["latency_batch_size"] == 1
    timed.clear()
    evaluation.single_request_latency(timed.append, 10, 3, warm_up=False)
    assert timed == [0, 4, 9]  # a caller that just ran the model skips the warm-up


def test_encoder_baseline_trains_on_train_stops_on_val_and_records(tmp_path):
    from aims_kit.training import encoder

    params = {"encoder_max_steps": 2, "batch_size": 8, "eval_steps": 1, "seed": 22, "latency_sample": 2, "n_boot": 50}
    run = encoder.encoder_run(BenchmarkParams.from_params(params), experiments.load_splits("", 22), tmp_path)
    record = results.read_json(run / "results" / "aims_test.json")
    assert (record["regime"], record["condition"], record["tokens_per_prompt"]) == ("encoder", "label_only", 0.0)
    assert record["parse_failure_rate"] == 0.0 and "f1_ci_low" in record and record["latency_p50_ms"] > 0
    assert not (run / "checkpoints").exists()
    choice = record["selected_checkpoint"]  # chosen on validation F1, like every generating regime
    assert choice["metric"] == "f1" and [p["step"] for p in choice["history"]] == [1, 2]
    best = max(choice["history"], key=lambda p: p["val_f1"])["step"]  # max keeps the first of equals: the earlier step
    assert record["checkpoint_step"] == best
    loaded = runs.load_run(run)
    fixture = benchmark_eval.evaluate_loaded(loaded, benchmarks.load_fixture("harmbench"), "fixture:harmbench",
                                             BenchmarkParams(latency_sample=0, n_boot=20))
    assert fixture["n"] == 6 and fixture["f1_flag_all"] == 1.0


def test_a_second_eval_keeps_the_first_record_unless_told_to_replace_it(trained_run, capsys):
    path = benchmarks.FIXTURES_DIR / "sst_test_cases.csv"
    args = ["eval", "--run", str(trained_run), "--benchmark", "simplesafetytests", "--path", str(path), *FAST]
    assert main([*args, "--limit", "4"]) == 0
    first = results.read_json(trained_run / "results" / "fixture:simplesafetytests.json")
    assert main([*args, "--limit", "6"]) == 1
    err = capsys.readouterr().err
    assert "already has a record" in err and "n=4" in err and "--replace" in err
    assert results.read_json(trained_run / "results" / "fixture:simplesafetytests.json") == first  # untouched
    assert main([*args, "--limit", "6", "--replace"]) == 0
    assert results.read_json(trained_run / "results" / "fixture:simplesafetytests.json")["n"] == 6
    assert len(list((trained_run / "history").glob("results-fixture:simplesafetytests-*.json"))) == 1  # the first, kept
