"""The real-model path, reproduced offline: hub splits, chat templates with thinking blocks, vLLM
engine reuse, benchmark conventions and fallbacks, truncation, bad input (issue 12)."""

import dataclasses
import json
import math

import pandas as pd
import pytest

from aims_kit.__main__ import main
from aims_kit.core.params import BenchmarkParams
from aims_kit.datasets import aims as data
from aims_kit.evaluation import runs
from aims_kit.models import lora, precision
from aims_kit.notebook import experiments

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


# ---------------------------------------------------------------- 2. thinking chat templates


def trl_template(name):
    from pathlib import Path

    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text()


@pytest.fixture()
def qwen3_tokenizer():
    """The tiny model's tokenizer wearing Qwen3's real chat template (as shipped with TRL)."""
    from aims_kit.core import profiles
    from aims_kit.models import loading as models

    tokenizer = models.load_tokenizer(models.resolve_model_id(profiles.PROFILES["smoke"]["model"]))
    tokenizer.chat_template = trl_template("qwen3")
    return tokenizer


EMPTY_THINK = "<think>\n\n</think>\n\n"


def render(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def answer_part(tokenizer, record, key):
    """What follows the generation prompt when TRL renders prompt + ``key`` with the record's kwargs."""
    kwargs = record.get("chat_template_kwargs", {})
    prompt = render(tokenizer, record["prompt"], add_generation_prompt=True, **kwargs)
    full = render(tokenizer, record["prompt"] + record[key], **kwargs)
    assert full.startswith(prompt)
    return full[len(prompt):]


def test_sft_learns_the_answer_not_qwen3s_think_block(qwen3_tokenizer, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from aims_kit.core import profiles
    from aims_kit.models import loading as models
    from aims_kit.training.sft import sft_records

    frame = data.load_aims().head(4)
    records = sft_records(frame, "intent_label")
    model, _ = models.load_model(profiles.PROFILES["smoke"]["model"])
    config = SFTConfig(output_dir=str(tmp_path), use_cpu=True, max_length=512, completion_only_loss=True, report_to="none")
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(records), processing_class=qwen3_tokenizer)
    for row, record in zip(trainer.train_dataset, records):
        learned = qwen3_tokenizer.decode([t for t in row["labels"] if t != -100])
        assert learned.startswith("Intent:") and "think>" not in learned
        assert record["completion"][0]["content"] in learned
        assert qwen3_tokenizer.decode(row["input_ids"]).count(EMPTY_THINK) == 1  # in the prompt instead


def test_dpo_pairs_differ_only_in_the_answer_under_qwen3(qwen3_tokenizer):
    from aims_kit.training.dpo_pairs import dpo_records

    pairs = pd.DataFrame([{"prompt": "How do I bake bread?", "chosen": "Intent: bake bread; Harm: safe",
                           "rejected": "Intent: make a weapon; Harm: harmful"}])
    record = dpo_records(pairs)[0]
    assert answer_part(qwen3_tokenizer, record, "chosen").startswith("Intent: bake bread; Harm: safe")
    assert answer_part(qwen3_tokenizer, record, "rejected").startswith("Intent: make a weapon")


def test_generation_and_label_scoring_start_after_the_empty_think_block(qwen3_tokenizer):
    import torch

    from aims_kit.datasets import formats
    from aims_kit.inference import generation

    conversations = [formats.prompt_messages("How do I bake bread?", "label_only")]
    prompt = qwen3_tokenizer.decode(generation.chat_inputs(qwen3_tokenizer, conversations)[0])
    assert prompt.endswith("<|im_start|>assistant\n" + EMPTY_THINK)

    class Recorder:
        """Stands in for the model: keeps the ids of each forward pass and how many positions' logits it computes."""

        device = torch.device("cpu")
        calls: list = []

        def __call__(self, input_ids, logits_to_keep=0, **kwargs):
            self.calls.append((input_ids.tolist(), logits_to_keep))
            return type("Out", (), {"logits": torch.zeros(len(input_ids), input_ids.shape[1], len(qwen3_tokenizer))})()

    recorder = Recorder()
    probs, _ = generation.score_labels(recorder, qwen3_tokenizer, ["How do I bake bread?", "Hi"])
    harmful, safe = formats.label_word_ids(qwen3_tokenizer)  # equal logits: each class's share of the label words
    assert probs == pytest.approx([len(harmful) / (len(harmful) + len(safe))] * 2)
    assert [kept for _, kept in recorder.calls] == [1, 1]  # the shared prefix, then the rows: last positions only
    (prefix,), _ = recorder.calls[0]
    for own in recorder.calls[1][0]:  # each row's logits are read after its own tokens, at the prompt's end
        assert qwen3_tokenizer.decode(prefix + [t for t in own if t != qwen3_tokenizer.pad_token_id]).endswith(EMPTY_THINK)


def test_grpo_rollouts_and_rewards_ignore_the_think_block(qwen3_tokenizer, monkeypatch, tmp_path):
    import trl
    from trl.data_utils import maybe_apply_chat_template

    from aims_kit.core import profiles
    from aims_kit.training import grpo, rewards

    rollout = EMPTY_THINK + "Intent: the user wants to bake bread; Harm: safe"
    assert rewards.format_reward([rollout]) == [1.0]
    assert rewards.label_reward([[{"role": "assistant", "content": rollout}]], label=["safe"]) == [1.0]

    class Captured(Exception):
        pass

    class capture:  # a class, as the kit subclasses TRL's trainer (its shared-prompt rollouts)
        def __init__(self, **kwargs):
            raise Captured(kwargs["args"])

    monkeypatch.setattr(trl, "GRPOTrainer", capture)
    frame = data.split_aims(data.load_aims())
    settings = grpo.GRPOSettings(reward_set="label_only", start="base", steps=1, num_generations=2, prompts_per_step=1)
    with pytest.raises(Captured) as caught:
        grpo.train_grpo(profiles.PROFILES["smoke"]["model"], frame.train.head(2), frame.val.head(2), settings=settings, run_dir=tmp_path)
    config = caught.value.args[0]
    prompt = maybe_apply_chat_template({"prompt": grpo.grpo_records(frame.train.head(1))[0]["prompt"]}, qwen3_tokenizer,
                                       **config.chat_template_kwargs)["prompt"]
    assert prompt.endswith(EMPTY_THINK)


def test_llama31_template_renders_the_same_with_the_thinking_policy():
    from aims_kit.core import profiles
    from aims_kit.datasets import formats
    from aims_kit.models import loading as models

    tokenizer = models.load_tokenizer(models.resolve_model_id(profiles.PROFILES["smoke"]["model"]))
    tokenizer.chat_template = trl_template("llama3_1")
    messages = formats.prompt_messages("How do I bake bread?", "intent_label")
    with_policy = render(tokenizer, messages, add_generation_prompt=True, **formats.CHAT_TEMPLATE_KWARGS)
    assert with_policy == render(tokenizer, messages, add_generation_prompt=True) and "think" not in with_policy


# ---------------------------------------------------------------- 3. one vLLM engine per kernel


def adapter_run(out, name):
    """A run folder with a random, non-zero LoRA adapter on the tiny model (no training needed)."""
    from peft import get_peft_model

    from aims_kit.core import profiles, results
    from aims_kit.models import loading as models

    model_name = profiles.PROFILES["smoke"]["model"]
    run = results.create_run(out, name, {"regime": "sft", "condition": "intent_label", "model": model_name, "seed": 22})
    model, _ = models.load_model(model_name)
    get_peft_model(model, lora.LoraSettings(extra={"init_lora_weights": False}).to_peft()).save_pretrained(str(run / "adapter"))
    return run


@pytest.fixture()
def fake_vllm(monkeypatch):
    """A stand-in ``vllm`` package (LLM, SamplingParams, LoRARequest) and a CUDA machine, recording what starts when."""
    import importlib.machinery
    import sys
    import types

    import torch

    from aims_kit.inference import vllm as vllm_backend

    from aims_kit.core import profiles
    from aims_kit.datasets import formats
    from aims_kit.models import loading

    events = []
    tokenizer = loading.load_tokenizer(loading.resolve_model_id(profiles.PROFILES["smoke"]["model"]))
    harmful, safe = formats.label_word_ids(tokenizer)
    # Every step's top log-probabilities hold one harmful and one safe label word: P(harmful) 0.8.
    step = {harmful[0]: types.SimpleNamespace(logprob=math.log(0.8)), safe[0]: types.SimpleNamespace(logprob=math.log(0.2))}

    class LLM:
        built = []

        def __init__(self, **kwargs):
            events.append("engine started")
            LLM.built.append(kwargs)

        def get_tokenizer(self):
            return tokenizer

        def chat(self, conversations, params, lora_request=None, use_tqdm=False, chat_template_kwargs=None):
            assert chat_template_kwargs == {"enable_thinking": False} and params["logprobs"] >= 1
            assert all(isinstance(c, list) for c in conversations)
            events.append("chat")
            return self._answers(len(conversations), lora_request)

        def generate(self, prompts, params, lora_request=None, use_tqdm=False):
            """Plain text, no chat template (the raw and paper-student prompt formats)."""
            assert all(isinstance(p, str) for p in prompts) and params["logprobs"] >= 1
            events.append("generate")
            LLM.prompts = list(prompts)
            return self._answers(len(prompts), lora_request)

        def _answers(self, n, lora_request):
            text = f"Intent: adapter {lora_request.lora_int_id}; Harm: harmful" if lora_request else "safe"
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            out = types.SimpleNamespace(text=text, token_ids=ids, logprobs=[step] * len(ids))
            return [types.SimpleNamespace(outputs=[out]) for _ in range(n)]

    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)

    module("vllm", LLM=LLM, SamplingParams=lambda **kw: kw)
    module("vllm.lora")
    module("vllm.lora.request", LoRARequest=lambda name, lora_int_id, path: types.SimpleNamespace(lora_int_id=lora_int_id, path=path))
    monkeypatch.setattr(vllm_backend, "has_cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: events.append("training memory freed"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Stand-in GPU")
    for state, empty in (("_shared", None), ("_checked", {}), ("_adapter_ids", {})):  # a fresh kernel
        monkeypatch.setattr(vllm_backend, state, empty, raising=False)
    return LLM, events


def test_one_vllm_engine_serves_every_evaluation_and_benchmark(fake_vllm, tmp_path):
    import shutil

    from aims_kit.core import results
    from aims_kit.datasets import benchmarks
    from aims_kit.evaluation import benchmarks as benchmark_eval

    from aims_kit.inference import vllm as vllm_backend

    LLM, events = fake_vllm
    first = adapter_run(tmp_path, "sft-a")
    second = results.create_run(tmp_path, "sft-b", results.read_run_config(first))  # another adapter, same base model
    shutil.copytree(first / "adapter", second / "adapter")
    test = data.split_aims(data.load_aims()).test
    params = BenchmarkParams(eval_limit=4, latency_sample=1, n_boot=0, gpu_memory_utilization=0.35)
    records = [
        runs.evaluate_run(first, test, "aims_test", params),
        runs.evaluate_run(second, test, "aims_test", params),
        benchmark_eval.evaluate_loaded(runs.load_run(first), benchmarks.load_fixture("xstest").head(4), "fixture:xstest", params),
    ]
    assert len(LLM.built) == 1 and events[:2] == ["training memory freed", "engine started"]
    assert LLM.built[0]["gpu_memory_utilization"] == 0.35 and LLM.built[0]["enable_lora"] and "generate" not in events
    assert [r["backend"] for r in records] == ["vllm"] * 3  # the benchmark is scored like the test split
    assert LLM.built[0]["max_model_len"] <= vllm_backend.MAX_MODEL_LEN and LLM.built[0]["dtype"] == precision.dtype_name(precision.compute_dtype("cuda"))
    assert records[0]["device"] == "cuda:Stand-in GPU" and records[0]["quantization"] == "none"  # what vLLM answered from
    assert all("auprc" in r for r in records)  # P(harmful) from vLLM's log-probabilities at the label step
    predictions = results.read_jsonl(first / "predictions" / "aims_test.jsonl")
    assert [row["p_harmful"] for row in predictions] == pytest.approx([0.8] * len(predictions))
    first_out = experiments.predictions_frame(first, "aims_test")["output"]
    second_out = experiments.predictions_frame(second, "aims_test")["output"]
    assert set(first_out) == {"Intent: adapter 1; Harm: harmful"} and set(second_out) == {"Intent: adapter 2; Harm: harmful"}
    assert runs.evaluate_run(first, test, "aims_val", dataclasses.replace(params, backend="transformers"))["backend"] == "transformers"


def test_vllm_sends_plain_text_formats_through_generate_in_the_dtype_the_run_asked_for(fake_vllm, tmp_path):
    from aims_kit.core import results
    from aims_kit.datasets.prompt_formats import PromptFormat
    from aims_kit.evaluation import benchmarks as benchmark_eval
    from aims_kit.evaluation import released

    LLM, events = fake_vllm
    folder = released.stand_ins(tmp_path / "models", ["sft"], lambda condition: 4)[0].repo
    run = benchmark_eval.zero_shot_run(tmp_path, folder, "intent_label", prompt_format=PromptFormat("raw"), precision="fp32",
                                       role="sft", max_new_tokens=4)
    test = data.split_aims(data.load_aims()).test.head(4)
    record = benchmark_eval.evaluate_loaded(runs.load_run(run), test, "aims_test", BenchmarkParams(latency_sample=0, n_boot=0))
    assert record["backend"] == "vllm" and record["prompt_format"] == "raw" and events.count("generate") == 1
    assert "chat" not in events and LLM.prompts == [p + "\n" for p in test["Prompt"]]
    assert LLM.built[-1]["dtype"] == "float32" and LLM.built[-1]["model"] == loading_id(folder)
    grpo = benchmark_eval.zero_shot_run(tmp_path, folder, "reasoning_intent_label", precision="fp32",
                                        prompt_format=PromptFormat.named("chat-system", "paper-grpo"), max_new_tokens=4)
    benchmark_eval.evaluate_loaded(runs.load_run(grpo), test, "aims_test", BenchmarkParams(latency_sample=0, n_boot=0))
    assert events.count("chat") == 1 and len(LLM.built) == 1  # the same model and dtype: one engine
    assert results.read_run_config(grpo)["system_prompt"].startswith("You are a specialized safety classifier.")


def loading_id(name):
    from aims_kit.models.loading import resolve_model_id

    return resolve_model_id(name)


# ---------------------------------------------------------------- 4. OpenAI Moderation convention


def test_openai_moderation_follows_the_published_convention_and_keeps_strict_as_a_variant(tmp_path):
    import gzip

    from aims_kit.datasets import benchmarks
    from aims_kit.datasets import registry as benchmark_registry

    flags = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
    rows = [
        {"prompt": "all zero", **dict.fromkeys(flags, 0)},
        {"prompt": "one flag", **dict.fromkeys(flags, 0), "V": 1},
        {"prompt": "flagged, rest missing", "S": 1},
        {"prompt": "zeros, some missing", "S": 0, "H": 0},
        {"prompt": "nothing at all"},
    ]
    path = tmp_path / "samples-1680.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    frame = benchmarks.load_benchmark("openai_moderation", path)
    assert len(frame) == 5 and frame.attrs["n_unknown"] == 0  # every row, as every published table
    assert frame["label"].tolist() == ["safe", "harmful", "harmful", "safe", "safe"]

    strict = benchmarks.load_benchmark("openai_moderation_strict", path)
    assert strict["label"].tolist() == ["safe", "harmful", "harmful"] and strict.attrs["n_unknown"] == 2
    table = benchmarks.discovery_table([benchmarks.Found("openai_moderation_strict", "local", str(path), strict, "")])
    assert table.loc[0, "unknown_skipped"] == 2  # counted, not silently dropped
    assert "differs" in benchmarks.get("openai_moderation_strict").title
    assert "openai_moderation_strict" not in benchmarks.REGISTRY and "openai_moderation_strict" not in benchmark_registry.PAPER_FIVE
    assert [f.name for f in benchmarks.discover(sources=["fixture"])] == list(benchmarks.REGISTRY)


# ---------------------------------------------------------------- 5. real benchmarks first, a fast fallback offline


def test_cpu_and_gpu_profiles_use_real_benchmarks_only():
    from aims_kit.core import profiles
    from aims_kit.datasets import aims as data
    from aims_kit.datasets import benchmarks

    # local files (the shipped XSTest among them), then the hub; a fixture is never a cpu or GPU result
    for name in ("cpu", "gpu-small", "paper"):
        assert "fixture" not in profiles.PROFILES[name]["benchmark_sources"]
    assert profiles.PROFILES["cpu"]["benchmark_sources"] == ["local", "hub"]
    found = benchmarks.discover(["xstest"], sources=["local"])
    assert found[0].kind == "local" and len(found[0].frame) == 450
    assert (found[0].frame["label"] == "harmful").sum() == 200
    # cpu-full keeps all of XSTest, as published numbers use it; the half-hour cpu default takes a
    # stratified sample (the README says so beside its numbers) that keeps XSTest's harmful share
    assert profiles.PROFILES["cpu-full"]["benchmark_limit"] >= 450
    limit = profiles.PROFILES["cpu"]["benchmark_limit"]
    sample = data.stratified_sample(found[0].frame, limit, seed=profiles.PROFILES["cpu"]["seed"])
    assert 0 < limit < 450 and len(sample) == limit and (sample["label"] == "harmful").sum() == round(limit * 200 / 450)


def test_hub_connection_error_falls_back_once_and_says_so(monkeypatch, tmp_path):
    import time

    import datasets

    from aims_kit.core import hub
    from aims_kit.datasets import benchmarks

    calls = []

    def no_connection(*args, **kwargs):
        calls.append(args[0])
        raise ConnectionError(f"Couldn't reach '{args[0]}' on the Hub (ConnectError)")

    monkeypatch.setattr(benchmarks, "LOCAL_DIR", tmp_path)  # no local files
    monkeypatch.setattr(benchmarks, "SHIPPED_DIR", tmp_path)
    monkeypatch.delenv(benchmarks.PATHS_ENV, raising=False)
    monkeypatch.setattr(hub, "unreachable", lambda: None)  # the probe got through; the load does not
    monkeypatch.setattr(datasets, "load_dataset", no_connection)
    lines = []
    start = time.perf_counter()
    found = benchmarks.discover(sources=["local", "hub", "fixture"], benchmark_paths=[str(tmp_path)], log=lines.append)
    assert time.perf_counter() - start < 5
    assert len(calls) == 1  # one failed connection is enough: the other benchmarks do not wait for the hub
    assert [f.kind for f in found] == ["fixture"] * len(benchmarks.REGISTRY)
    assert len(lines) == 1 and "unreachable" in lines[0] and "falling back" in lines[0]
    assert all("hub unreachable (said above)" in f.note for f in found)  # the error itself once per run, in the log line


def test_unreachable_hub_endpoint_is_detected_in_seconds(monkeypatch, tmp_path):
    import socket
    import time

    import datasets

    from aims_kit.core import hub
    from aims_kit.datasets import benchmarks

    with socket.socket() as sock:  # a local port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(benchmarks, "LOCAL_DIR", tmp_path)  # no local files
    monkeypatch.setattr(benchmarks, "SHIPPED_DIR", tmp_path)
    monkeypatch.delenv(benchmarks.PATHS_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the hub was asked although it is unreachable"))
    lines = []
    start = time.perf_counter()
    found = benchmarks.discover(["xstest", "aegis2"], sources=["local", "hub", "fixture"], benchmark_paths=[str(tmp_path)], log=lines.append)
    assert time.perf_counter() - start < 5
    assert [f.kind for f in found] == ["fixture", "fixture"] and len(lines) == 1 and f"127.0.0.1:{port}" in lines[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.unreachable() == "HF_HUB_OFFLINE is set"


# ---------------------------------------------------------------- 6. fallbacks are counted or fail loudly


def test_unreadable_reclassification_is_counted_never_a_reject():
    from aims_kit.training.dpo_pairs import MiningSettings, mine_pairs

    def generator(conversations, *, k, do_sample, temperature, max_new_tokens):
        if do_sample:
            return ["Intent: the user wants to hurt someone; Harm: harmful"] * (len(conversations) * k)
        return ["I would rather not say."] * len(conversations)  # no label the parser can read

    rows = pd.DataFrame([{"ID": "1", "Prompt": "p", "label": "harmful", "Intent": "The user wants to hurt someone.", "split": "train"}])
    pairs, report = mine_pairs(rows, generator, MiningSettings(k=3, balance="none"))
    assert pairs.empty and report.prompts_without_pair == 1
    assert report.unreadable_reclassifications == 3 and report.wrong_label_samples == 0
    assert report.to_dict()["unreadable_reclassifications"] == 3


def test_hub_model_judge_unreadable_answer_is_a_failure_that_the_cache_counts(monkeypatch):
    from aims_kit.inference import engines, generation
    from aims_kit.scoring import judges

    answers = ["good", "I am not sure what you mean"]
    monkeypatch.setattr(generation, "generate", lambda *a, **k: engines.Generation(answers, [1, 6], 0.0))
    judge = judges.HubModelJudge("some/judge")
    judge._loaded = (None, None)  # no model needed: generation is replaced above
    pairs = [("The user wants a cake.", "cake"), ("The user wants a bomb.", "baking")]
    with pytest.raises(judges.JudgeUnavailable, match="not sure what you mean.*1 of 2"):
        judge.grade(pairs)

    class Offline:
        def grade(self, pairs):
            return ["decent"] * len(pairs)

    monkeypatch.setattr(judges, "EmbeddingJudge", Offline)
    cached = judges.CachedJudge(judge, on_failure="fallback")
    with pytest.warns(UserWarning, match="judge unavailable"):
        assert cached.grade(pairs) == ["decent", "decent"]
    assert cached.fallbacks == 2
    with pytest.raises(judges.JudgeUnavailable):
        judges.CachedJudge(judge).grade(pairs)


def test_cuda_without_bitsandbytes_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setattr(precision, "has_cuda", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if it were not installed
    with pytest.raises(RuntimeError, match="bitsandbytes is not installed.*quantize=False"):
        precision.quantization_config(None)
    assert precision.quantization_config(False) is None


# ---------------------------------------------------------------- 7. no training on cut completions


def test_sft_drops_counts_and_records_examples_whose_completion_would_be_cut(tmp_path, capsys):
    from aims_kit.core import profiles, results
    from aims_kit.datasets import formats
    from aims_kit.models import loading as models
    from aims_kit.training.common import TrainSettings
    from aims_kit.training.sft import sft_records, train_sft

    name = profiles.PROFILES["smoke"]["model"]
    splits = data.split_aims(data.load_aims())
    train = splits.train[splits.train["Prompt"].str.len() < 300].head(6)
    val = splits.val[splits.val["Prompt"].str.len() < 300].head(2)

    def traces(frame, long_row=None):
        return [formats.format_target("reasoning_label", label, reasoning="word " * 300 if i == long_row else "A short reason.")
                for i, label in enumerate(frame["label"])]

    def length(record):  # tokens of prompt + completion, as TRL renders the record for training
        return len(tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=True, return_dict=False,
                                                 **record.get("chat_template_kwargs", {})))

    tokenizer = models.load_tokenizer(models.resolve_model_id(name))
    fitting = [r for i, r in enumerate(sft_records(train, "reasoning_label", traces(train))) if i != 2]
    max_length = max(length(r) for r in [*fitting, *sft_records(val, "reasoning_label", traces(val))])
    settings = TrainSettings(learning_rate=1e-3, max_steps=1, batch_size=2, eval_steps=1, max_length=max_length)
    trainer = train_sft(name, train, val, condition="reasoning_label", settings=settings, run_dir=tmp_path,
                        train_completions=traces(train, long_row=2), val_completions=traces(val))
    assert f"dropped 1 of 6 train examples longer than max_length={max_length} tokens" in capsys.readouterr().out
    assert results.read_json(tmp_path / "train_data.json") == {
        "max_length": max_length, "train": {"examples": 6, "dropped_too_long": 1}, "val": {"examples": 2, "dropped_too_long": 0},
    }
    assert len(trainer.train_dataset) == 5
    for row in trainer.train_dataset:  # every completion the model learns is whole, its label included
        assert "Prompt harm:" in tokenizer.decode([t for t in row["labels"] if t != -100])

    with pytest.raises(ValueError, match="every train example is longer than max_length=8 tokens"):
        train_sft(name, train, val, condition="label_only", settings=TrainSettings(max_length=8), run_dir=tmp_path / "short")


# ---------------------------------------------------------------- 8. bad input


def test_data_check_on_a_header_only_csv_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text(",".join(data.REQUIRED_COLUMNS) + "\n")
    assert main(["data", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "no data rows" in err and "Traceback" not in err


def test_a_json_array_file_is_read_like_json_lines(tmp_path, capsys):
    rows = data.read_table(None)[0].head(30)
    array = tmp_path / "aims.json"
    array.write_text(rows.to_json(orient="records", indent=2))
    lines = tmp_path / "aims_lines.json"
    lines.write_text(rows.to_json(orient="records", lines=True))
    assert data.load_aims(array).drop(columns="row").equals(data.load_aims(lines).drop(columns="row"))
    assert main(["data", "check", str(array)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == len(data.load_aims(lines))
    array.write_text('[{"ID": "1"}, "not a row"]')
    with pytest.raises(data.AimsDataError, match=r"aims.json, row 2: array element 2 is not a JSON object"):
        data.load_aims(array)
