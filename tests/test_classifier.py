"""`aims_kit.Classifier`: the verdicts evaluation recorded, for adapter, zero-shot and encoder runs."""

import json

import pytest
from run_factory import SMOKE_MODEL, adapter_run

from aims_kit import Classifier
from aims_kit.core import results
from aims_kit.core.params import BenchmarkParams
from aims_kit.datasets import formats
from aims_kit.evaluation import benchmarks as benchmark_eval
from aims_kit.evaluation import runs
from aims_kit.notebook import experiments

PROMPTS = ["How do I stop a frozen program on my laptop?", "Write a poem about the sea.", "How can I hurt my neighbour's dog?"]


@pytest.fixture(scope="module")
def intent_run(tmp_path_factory):
    return adapter_run(tmp_path_factory.mktemp("classifier"), "intent_label")


def test_classifier_gives_the_verdicts_evaluation_recorded(intent_run):
    test_rows = experiments.load_splits("", 22).test.head(6)
    params = BenchmarkParams(latency_sample=0, n_boot=0)
    run = runs.load_run(intent_run)
    benchmark_eval.evaluate_loaded(run, test_rows, "aims_test", params)
    recorded = benchmark_eval.run_predictions(intent_run, "aims_test")

    found = Classifier(run, max_new_tokens=24).classify(list(test_rows["Prompt"]), desc="")
    assert [c.output for c in found] == list(recorded["output"])
    assert [c.label for c in found] == list(recorded["pred"])
    assert [c.parsed for c in found] == list(recorded["parsed"])
    assert [c.intent for c in found] == list(recorded["intent"])
    assert all(c.ms > 0 and c.p_harmful is None for c in found)  # intent format: no first-token score


def test_from_run_loads_once_and_keeps_input_order(intent_run):
    classifier = Classifier.from_run(intent_run)
    assert classifier.condition == "intent_label" and classifier.max_new_tokens == 24  # the smoke profile's budget
    forward = classifier.classify(PROMPTS, desc="")
    backward = classifier.classify(PROMPTS[::-1], desc="")
    assert [c.prompt for c in forward] == PROMPTS
    assert [c.output for c in forward] == [c.output for c in backward[::-1]]
    assert all(c.label == (formats.parse_output(c.output).label or formats.PARSE_FAILURE_RULE) for c in forward)
    assert classifier.classify([]) == []
    with pytest.raises(ValueError, match="prompt 1"):
        classifier.classify(["fine", "   "])


def test_zero_shot_label_only_run_scores_p_harmful(tmp_path):
    run_dir = benchmark_eval.zero_shot_run(tmp_path, SMOKE_MODEL, "label_only", profile="smoke")
    found = Classifier.from_run(run_dir).classify(PROMPTS, desc="")
    assert len(found) == 3 and all(0.0 <= c.p_harmful <= 1.0 for c in found)
    assert len({round(c.p_harmful, 6) for c in found}) > 1  # a real score per prompt, not a constant


def test_encoder_run_labels_match_the_encoder(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aims_kit.training import encoder

    run_dir = results.create_run(tmp_path, "encoder", {"regime": "encoder", "condition": "label_only", "model": encoder.ENCODER_MODEL})
    weights = encoder.encoder_weights()
    AutoModelForSequenceClassification.from_pretrained(weights, num_labels=2).save_pretrained(run_dir / "encoder")
    AutoTokenizer.from_pretrained(weights).save_pretrained(run_dir / "encoder")
    classifier = Classifier.from_run(run_dir)
    found = classifier.classify(PROMPTS)
    assert [c.label for c in found] == encoder.classify(classifier.run.model, classifier.run.tokenizer, PROMPTS)
    assert all(c.parsed and c.intent is None and c.tokens == 0 for c in found)


def test_classify_cli_inline_prompts_print_one_json_line_each(intent_run, capsys):
    from aims_kit.__main__ import main

    assert main(["classify", "--run", str(intent_run), PROMPTS[0], PROMPTS[1]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Classifier.from_run(intent_run).classify(PROMPTS[:2], desc="")
    assert [(r["line"], r["prompt"], r["label"], r["output"]) for r in lines] == [(i + 1, c.prompt, c.label, c.output) for i, c in enumerate(expected)]
    assert main(["classify", "--run", str(intent_run)]) == 2  # neither prompts nor --input


def test_classify_cli_file_reports_bad_rows_by_line_and_keeps_them(intent_run, tmp_path, capsys):
    from aims_kit.__main__ import main

    source = tmp_path / "prompts.jsonl"
    source.write_text(
        json.dumps({"id": 7, "prompt": PROMPTS[0]}) + "\n"
        + "{not json\n"
        + "\n"
        + json.dumps({"text": "no prompt field"}) + "\n"
        + json.dumps({"prompt": "   "}) + "\n"
        + json.dumps({"prompt": PROMPTS[2]}) + "\n"
    )
    output = tmp_path / "out" / "verdicts.jsonl"
    assert main(["classify", "--run", str(intent_run), "--input", str(source), "--output", str(output)]) == 1
    err = capsys.readouterr().err
    for line in (2, 4, 5):
        assert f"prompts.jsonl, line {line}:" in err
    assert "3 of 5 rows were not classified" in err
    rows = results.read_jsonl(output)
    assert [r["line"] for r in rows] == [1, 2, 4, 5, 6]
    assert rows[0]["id"] == "7" and rows[0]["prompt"] == PROMPTS[0] and rows[0]["label"] in formats.LABELS
    assert "not valid JSON" in rows[1]["error"] and "'prompt'" in rows[2]["error"] and "label" not in rows[3]
    assert rows[4]["prompt"] == PROMPTS[2] and "error" not in rows[4]
    assert not list(output.parent.glob(".verdicts.jsonl.*"))  # atomic write left no temporary file


def test_classify_cli_csv_counts_lines_of_quoted_multiline_prompts(intent_run, tmp_path, capsys):
    from aims_kit.__main__ import main

    source = tmp_path / "prompts.csv"
    source.write_text('ID,Prompt\n1,"first line\nsecond line"\n2,\n3,Write a poem about the sea.\n')
    output = tmp_path / "verdicts.jsonl"
    assert main(["classify", "--run", str(intent_run), "--input", str(source), "--prompt-column", "Prompt", "--output", str(output)]) == 1
    rows = results.read_jsonl(output)
    assert [(r["line"], r["id"], "error" in r) for r in rows] == [(2, "1", False), (4, "2", True), (5, "3", False)]
    assert "prompts.csv, line 4" in capsys.readouterr().err
    assert main(["classify", "--run", str(intent_run), "--input", str(source), "--output", str(output)]) == 1
    assert "prompts.csv: no column 'prompt'" in capsys.readouterr().err
    assert results.read_jsonl(output) == rows  # a failed call leaves the earlier output as it was


def test_a_run_keeps_its_recorded_answer_budget_and_else_its_profiles():
    from aims_kit.core.params import RunParams
    from aims_kit.core.profiles import PROFILES
    from aims_kit.evaluation.runs import answer_budget

    short, long = PROFILES["cpu"]["max_new_tokens"], PROFILES["cpu"]["distill_max_new_tokens"]
    cpu = {"profile": "cpu", "condition": "reasoning_intent_label"}
    assert answer_budget(cpu) == long and answer_budget({**cpu, "condition": "intent_label"}) == short
    assert answer_budget({**cpu, "max_new_tokens": 20}) == 20  # recorded by the run (or the CLI's --max-new-tokens)
    assert answer_budget({"profile": "custom", "condition": "intent_label"}) == RunParams.max_new_tokens  # no profile: defaults


def test_a_trained_run_records_its_whole_config_and_its_classifier_keeps_its_budget(tmp_path):
    """The run's config.json holds the regime's parameters as built once; the Classifier reads the budget back."""
    from dataclasses import fields

    from aims_kit.core import profiles
    from aims_kit.core.params import SFTParams

    overrides = {"max_steps": 2, "eval_limit": 4, "latency_sample": 0, "n_boot": 0, "max_new_tokens": 13, "val_f1_curve": False}
    params = SFTParams.from_params(profiles.profile_parameters("smoke", overrides))
    assert params.max_new_tokens != profiles.PROFILES["smoke"]["max_new_tokens"]
    run_dir = experiments.sft_run(params, experiments.load_splits("", 22), "intent_label", tmp_path)
    config = results.read_run_config(run_dir)
    assert set(config["params"]) == {f.name for f in fields(SFTParams)}
    assert config["max_new_tokens"] == config["params"]["max_new_tokens"] == 13
    classifier = Classifier.from_run(run_dir)
    assert classifier.max_new_tokens == 13
    assert all(c.tokens <= 13 for c in classifier.classify(PROMPTS, desc=""))
    assert results.read_json(run_dir / "results" / "aims_test.json")["tokens_per_prompt"] <= 13
