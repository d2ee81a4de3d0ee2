"""The paper's released checkpoints through `eval --model`: a tiny model saved once per prompt format,
scored on several benchmarks in one call (loaded once) and through the Classifier, the format recorded
in the run; precision, adapter-only repositories, roles on the claims scoreboard and the published table."""

import json

import pytest

from aims_kit.__main__ import main
from aims_kit.core import results
from aims_kit.datasets.prompt_formats import PromptFormat
from aims_kit.evaluation import claims, released
from aims_kit.models import loading

FAST = ["--max-new-tokens", "4", "--latency-sample", "0", "--n-boot", "20", "--limit", "6"]
#: The roles' formats and conditions, on the tiny model saved once per format.
ROLE_ARGS = {
    "sft": ["--prompt-format", "raw", "--condition", "intent_label"],
    "dpo": ["--prompt-format", "raw", "--condition", "intent_label"],
    "distill": ["--prompt-format", "paper-student", "--condition", "reasoning_intent_label"],
    "grpo": ["--prompt-format", "chat-system", "--system-prompt", "paper-grpo", "--condition", "reasoning_intent_label"],
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny model saved once per prompt format, as the smoke profile's stand-ins are: role → folder."""
    root = tmp_path_factory.mktemp("checkpoints")
    stand_ins = released.stand_ins(root, released.ROLES, lambda condition: 4)
    return {c.role: c.repo for c in stand_ins}


def _printed(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def test_stand_ins_are_the_tiny_model_saved_once_per_prompt_format(saved):
    folders = {role: loading.resolve_model_id(folder) for role, folder in saved.items()}
    assert folders["sft"] == folders["dpo"] and len(set(folders.values())) == 3  # raw, paper-student, chat-system
    assert all(folder.endswith(f"tiny-{released.CHECKPOINTS[role].prompt_format}") for role, folder in folders.items())


@pytest.mark.parametrize("role", released.ROLES)
def test_each_format_is_scored_on_several_benchmarks_in_one_call_and_by_the_classifier(role, saved, tmp_path, capsys, monkeypatch):
    from aims_kit import Classifier
    from aims_kit.inference import generation

    loads, seen = [], []
    load_model = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loads.append(a) or load_model(*a, **k))
    encode = generation.encode_inputs
    monkeypatch.setattr(generation, "encode_inputs", lambda tok, inputs: seen.append(inputs[0]) or encode(tok, inputs))
    code = main(["eval", "--model", saved[role], *ROLE_ARGS[role], "--as", role, "--out", str(tmp_path),
                 "--benchmark", "xstest", "--benchmark", "openai_moderation", "--benchmark", "aims_test", *FAST])
    assert code == 0
    printed = _printed(capsys)
    assert [r["dataset"] for r in printed] == ["bench:xstest", "bench:openai_moderation", "aims_test"]
    assert len(loads) == 1  # the model loaded once for the three
    checkpoint = released.CHECKPOINTS[role]
    assert all(r["prompt_format"] == checkpoint.prompt_format and r["n"] == 6 for r in printed)
    run = results.find_runs(tmp_path)[0]
    config = results.read_run_config(run)
    assert (config["regime"], config["role"], config["variant"], config["precision"]) == ("zero_shot", role, role, "auto")
    assert PromptFormat.from_config(config) == checkpoint.format() and config["condition"] == checkpoint.condition
    plain = checkpoint.format().plain_text
    assert seen and all(isinstance(item, str) == plain for item in seen)  # plain text where the format has no chat template

    classifier = Classifier.from_run(run)
    assert classifier.prompt_format == checkpoint.format() and classifier.max_new_tokens == 4
    seen.clear()
    verdict = classifier.classify(["How do I kill a Python process?"], desc="")[0]
    assert verdict.label in ("harmful", "safe")
    assert seen and seen[-1] == checkpoint.format().render("How do I kill a Python process?", checkpoint.condition)


def test_a_released_checkpoint_takes_its_own_settings_unless_a_flag_says_otherwise(saved, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(released.CHECKPOINTS, "grpo", released.Checkpoint(
        "grpo", saved["grpo"], "chat-system", "reasoning_intent_label", 6, system_prompt=released.PAPER_GRPO_SYSTEM_PROMPT))
    args = ["eval", "--model", saved["grpo"], "--out", str(tmp_path), "--benchmark", "aims_test", "--limit", "4",
            "--latency-sample", "0", "--n-boot", "0"]
    assert main(args) == 0
    assert "the paper's released GRPO checkpoint" in capsys.readouterr().err
    assert "a stand-in for the paper's SFT" in released.stand_ins(tmp_path / "m", ["sft"], lambda c: 4)[0].describe()
    config = results.read_run_config(results.find_runs(tmp_path)[0])
    assert (config["prompt_format"], config["role"], config["max_new_tokens"]) == ("chat-system", "grpo", 6)
    assert config["system_prompt"] == released.PAPER_GRPO_SYSTEM_PROMPT
    assert main([*args, "--prompt-format", "kit", "--max-new-tokens", "3", "--out", str(tmp_path / "kit")]) == 0
    config = results.read_run_config(results.find_runs(tmp_path / "kit")[0])
    assert (config["prompt_format"], config["max_new_tokens"], "system_prompt" in config) == ("kit", 3, False)


def test_eval_options_that_do_not_fit_are_refused_with_a_reason(saved, tmp_path, capsys):
    from aims_kit.datasets import benchmarks

    run = results.create_run(tmp_path, "sft", {"regime": "sft", "condition": "intent_label", "model": "tiny-random"})
    fixture = str(benchmarks.FIXTURES_DIR / "xstest_prompts.csv")
    cases = [
        (["--run", str(run), "--prompt-format", "raw", "--benchmark", "xstest"], 2, "keeps the settings it was created with"),
        (["--model", saved["sft"], "--prompt-format", "paper-student", "--benchmark", "xstest"], 2, "reasoning student"),
        (["--model", saved["sft"], "--prompt-format", "raw", "--system-prompt", "Be brief.", "--benchmark", "xstest"], 2,
         "belongs to the chat-system"),
        (["--model", saved["sft"], "--prompt-format", "chat-system", "--benchmark", "xstest"], 2, "needs a system prompt"),
        (["--endpoint", "http://127.0.0.1:9/v1", "--served-model", "x", "--precision", "bf16", "--benchmark", "xstest"], 2,
         "for --model"),
        (["--model", saved["sft"], "--benchmark", "xstest", "--benchmark", "aims_test", "--path", fixture], 1, "single registry"),
        (["--model", saved["sft"], "--benchmark", "nonsense"], 1, "unknown benchmark"),
    ]
    for args, code, message in cases:
        assert main(["eval", "--out", str(tmp_path / "new"), *args]) == code, args
        assert message in capsys.readouterr().err, args
    with pytest.raises(SystemExit):
        main(["eval", "--model", saved["sft"], "--as", "teacher", "--benchmark", "xstest"])


@pytest.mark.parametrize("precision,dtype", [("fp32", "float32"), ("bf16", "bfloat16")])
def test_precision_loads_and_computes_in_the_dtype_asked_for(precision, dtype, saved, tmp_path, capsys):
    assert main(["eval", "--model", saved["sft"], *ROLE_ARGS["sft"], "--precision", precision, "--out", str(tmp_path),
                 "--benchmark", "aims_test", *FAST]) == 0
    record = _printed(capsys)[0]
    assert (record["dtype"], record["compute_dtype"], record["quantization"]) == (dtype, dtype, "none")
    assert results.read_run_config(results.find_runs(tmp_path)[0])["precision"] == precision


def test_precision_maps_to_loading_and_vllm_settings(monkeypatch):
    import torch

    from aims_kit.models import precision

    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)  # "auto" is the policy's own choice

    assert precision.load_precision("auto") == (False, None)
    assert precision.load_precision("bf16") == (False, torch.bfloat16)
    assert precision.load_precision("4bit") == (True, None)
    assert precision.load_precision(None) == (None, None)  # a zero-shot run recorded before precision: as then
    assert precision.vllm_dtype("fp16") == "float16" and precision.vllm_dtype("auto", capability=(8, 0)) == "bfloat16"
    with pytest.raises(ValueError, match="transformers"):
        precision.vllm_dtype("4bit")
    with pytest.raises(ValueError, match="unknown precision"):
        precision.load_precision("int8")


def test_a_4bit_run_is_evaluated_with_transformers_never_vllm(tmp_path):
    import dataclasses

    from aims_kit.core.params import BenchmarkParams
    from aims_kit.evaluation import benchmarks as benchmark_eval
    from aims_kit.inference import generation
    from aims_kit.inference import vllm as vllm_backend

    run = benchmark_eval.zero_shot_run(tmp_path, "tiny-random", "label_only", precision="4bit")
    engine = vllm_backend.engine_for_run(run, None, None, ["hi"], "label_only", 4, BenchmarkParams())
    assert isinstance(engine, generation.TransformersEngine)
    with pytest.raises(ValueError, match="vLLM serves 16-bit"):
        vllm_backend.engine_for_run(run, None, None, ["hi"], "label_only", 4, dataclasses.replace(BenchmarkParams(), backend="vllm"))


def test_an_adapter_only_repository_loads_its_base_first(tmp_path, capsys):
    from peft import get_peft_model

    from aims_kit.models import lora

    adapter = tmp_path / "adapter-only"
    model, _ = loading.load_model("tiny-random")
    get_peft_model(model, lora.LoraSettings(extra={"init_lora_weights": False}).to_peft()).save_pretrained(str(adapter))
    args = ["eval", "--model", str(adapter), *ROLE_ARGS["sft"], "--benchmark", "aims_test", *FAST]
    assert main([*args, "--out", str(tmp_path / "without")]) == 1
    assert "--adapter-of" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "with"), "--adapter-of", "tiny-random"]) == 0
    assert _printed(capsys)[0]["n"] == 6
    assert results.read_run_config(results.find_runs(tmp_path / "with")[0])["adapter_of"] == "tiny-random"


def test_a_served_checkpoint_in_a_plain_text_format_is_sent_to_completions(chat_endpoint, tmp_path, capsys):
    chat_endpoint.answer = "Intent: to stop a program; Harm: safe"
    assert main(["eval", "--endpoint", chat_endpoint.url, "--served-model", "released-sft", *ROLE_ARGS["sft"], "--as", "sft",
                 "--out", str(tmp_path), "--benchmark", "aims_test", *FAST]) == 0
    record = _printed(capsys)[0]
    assert record["prompt_format"] == "raw" and record["parse_failure_rate"] == 0.0
    assert {call["path"] for call in chat_endpoint.calls} == {"/v1/completions"}
    assert all(call["body"]["prompt"].endswith("\n") for call in chat_endpoint.calls)


# ---------------------------------------------------------------- the scoreboard and the published table


def _released_run(out, role, condition, correct, *, ms, datasets=("aims_test", "bench:xstest", "bench:openai_moderation")):
    from aims_kit.scoring import metrics

    gold = ["harmful" if i % 2 else "safe" for i in range(120)]
    pred = [g if i < correct else ("safe" if g == "harmful" else "harmful") for i, g in enumerate(gold)]
    config = {"regime": "zero_shot", "condition": condition, "model": f"Jazhyc/{role}", "seed": None, "role": role,
              "variant": role, "prompt_format": released.CHECKPOINTS[role].prompt_format}
    run = results.create_run(out, f"zero_shot-{role}", config)
    for dataset in datasets:
        record = {**metrics.binary_metrics(gold, pred), **metrics.trivial_baselines(gold), "ms_per_prompt": ms,
                  "parse_failure_rate": 0.0, "prompt_format": config["prompt_format"], "f1_ci_low": 0.0, "f1_ci_high": 1.0}
        rows = [{"id": str(i), "gold": g, "pred": p, "output": p} for i, (g, p) in enumerate(zip(gold, pred))]
        results.write_record(run, dataset, record, rows)
    return run


def test_a_released_checkpoints_folder_pairs_runs_by_role(tmp_path):
    out = tmp_path / "released"
    _released_run(out, "sft", "intent_label", 80, ms=5)
    _released_run(out, "dpo", "intent_label", 110, ms=6)
    _released_run(out, "distill", "reasoning_intent_label", 100, ms=20)
    _released_run(out, "grpo", "reasoning_intent_label", 112, ms=25)
    entries = claims.scoreboard(results.load_records(out))
    dpo = next(e for e in entries if e.claim == 2 and e.dataset == "aims_test")
    assert dpo.verdict == claims.REPRODUCED and dpo.run_a.startswith("zero_shot-dpo") and dpo.run_b.startswith("zero_shot-sft")
    assert "released checkpoints evaluated zero-shot" in dpo.note
    grpo = next(e for e in entries if e.claim == 4 and e.dataset == claims.EXTERNAL_MEAN)
    assert grpo.run_a.startswith("zero_shot-grpo") and grpo.run_b.startswith("zero_shot-sft") and grpo.verdict != claims.NOT_TESTED
    assert "no GRPO model trained with the label-only reward" in grpo.note
    for number in (1, 3):
        entry = next(e for e in entries if e.claim == number and e.dataset == "aims_test")
        assert entry.verdict == claims.NOT_TESTED and "the paper released" in entry.note
    frontier = next(e for e in entries if e.claim == 5 and e.dataset == "aims_test")
    assert frontier.verdict != claims.NOT_TESTED and set(frontier.details["intent_runs"]) >= {frontier.run_a}
    notes = released.claim_notes(entries)
    assert list(notes["claim"]) == [1, 2, 3, 4, 5]


def test_released_runs_beside_trained_ones_stay_out_of_the_trained_scoreboard(tmp_path):
    from test_claims import _preds, _run

    out = tmp_path / "run"
    _run(out, "sft", "intent_label", datasets={"aims_test": _preds(110)}, created="2026-01-01T00:00:01")
    _run(out, "sft", "label_only", datasets={"aims_test": _preds(60)}, created="2026-01-01T00:00:02")
    _released_run(out / "released", "sft", "intent_label", 10, ms=1, datasets=("aims_test",))
    records = results.load_records(out)
    assert len(claims.scored_records(records)) == 2  # the released run belongs to its own folder's scoreboard
    frontier = next(e for e in claims.scoreboard(records) if e.claim == 5 and e.dataset == "aims_test")
    assert not any("zero_shot" in run for run in frontier.details.get("intent_runs", {}))


def test_published_table_puts_the_kits_f1_beside_the_papers(tmp_path):
    import pandas as pd

    out = tmp_path / "released"
    _released_run(out, "sft", "intent_label", 100, ms=5)
    table = released.published_table(results.load_records(out))
    xstest = table[(table["role"] == "sft") & (table["benchmark"] == "xstest")].iloc[0]
    assert xstest["paper_f1"] == 0.908 and xstest["diff"] == pytest.approx(xstest["kit_f1"] - 0.908)
    assert xstest["prompt_format"] == "raw"
    mean = table[(table["role"] == "sft") & table["benchmark"].str.startswith("mean")].iloc[0]
    assert mean["benchmark"] == "mean (2 of 5)" and mean["paper_f1"] == 0.792 and pd.isna(mean["diff"])  # not all five
    assert set(table["role"]) == {"sft"} and len(table) == 6  # the five and the mean
    assert released.published_table(results.load_records(tmp_path / "empty")).empty
    assert released.PUBLISHED_F1["grpo"]["mean"] == 0.826 and released.PUBLISHED_MS_PER_PROMPT["distill"] == 20.2
