"""QLoRA executed on a CPU: a 4-bit NF4 tiny model through SFT, DPO, distillation, GRPO, evaluation, reload and export.

A GPU user's path is the same code with the device the only difference (models.load_model), so a
break in the bitsandbytes / PEFT / TRL interplay shows here first. The tiny random model learns
the format, never the decision: these tests check that training moves the adapter and that every
record says what it ran in, never a metric.
"""

import dataclasses

import pytest
import torch
from run_factory import SMOKE_MODEL, flipped_pairs
from safetensors.torch import load_file

from aims_kit.core import results
from aims_kit.core.params import DistillParams, GRPOParams, SFTParams
from aims_kit.datasets import formats
from aims_kit.inference import generation
from aims_kit.models import loading as models
from aims_kit.models import lora, precision
from aims_kit.notebook import experiments

bnb = pytest.importorskip("bitsandbytes")

PARAMS = {
    "model": SMOKE_MODEL, "profile": "test", "seed": 22, "quantize": True,
    "max_steps": 2, "learning_rate": 1e-2, "batch_size": 4, "eval_steps": 1, "val_f1_curve": True,
    "eval_limit": 4, "eval_batch_size": 8, "max_new_tokens": 8, "distill_max_new_tokens": 8, "latency_sample": 0, "n_boot": 0,
}
NF4 = precision.NF4_DOUBLE_QUANT


@pytest.fixture(scope="module")
def splits():
    return experiments.load_splits("", 22)


@pytest.fixture(scope="module")
def sft_run(splits, tmp_path_factory):
    """A 4-bit intent SFT run: validation loss and val F1 on the training object after step 2, then step 3 and its pass;
    then scored on the test split by a separate, fresh 4-bit instance. (Step 2, not 1: the first
    step runs at the warm-up's learning rate 0, and the random model's val F1 ties at every
    pass, so a pass at step 1 would be the kept checkpoint, an untrained adapter.)"""
    small = dataclasses.replace(splits, val=splits.val.head(8))  # val F1 classifies every val row at each pass
    params = SFTParams.from_params({**PARAMS, "max_steps": 3, "eval_steps": 2})
    return experiments.sft_run(params, small, "intent_label", tmp_path_factory.mktemp("qlora"))


def _adapter(run_dir):
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def _four_bit_layers(model) -> int:
    return sum(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())


def _assert_nf4_run(run_dir) -> None:
    config = results.read_run_config(run_dir)
    assert config["train"]["quantize"] is True
    policy = precision.dtype_name(precision.compute_dtype())  # QLoRA's compute dtype is the device policy's
    assert (config["quantization"], config["compute_dtype"]) == (NF4, policy)
    record = results.read_json(run_dir / "results" / "aims_test.json")
    assert (record["quantization"], record["compute_dtype"]) == (NF4, policy)  # scored in 4-bit too


def test_sft_trains_a_4bit_base_and_its_records_say_nf4(sft_run):
    _assert_nf4_run(sft_run)
    log = results.read_json(sft_run / "train_log.json")
    assert [e["step"] for e in log if "val_f1" in e] == [2, 3]
    assert results.read_json(sft_run / "val_selection.json")["best_step"] == 2
    assert all(tensor.abs().sum() > 0 for name, tensor in _adapter(sft_run).items() if "lora_B" in name)  # B starts at zero
    at_2, at_3 = (load_file(str(sft_run / "checkpoints" / f"checkpoint-{step}" / "adapter_model.safetensors")) for step in (2, 3))
    assert any(not torch.equal(at_2[k], at_3[k]) for k in at_2)  # step 3 still trained after the val-F1 pass on this object
    model, _ = models.load_trained(sft_run)  # the adapter-active check runs inside
    assert _four_bit_layers(model) > 0 and model.peft_config["default"].r == 16


def _lowest_lora_grads(model, batch) -> dict[str, torch.Tensor]:
    """Gradients of the first decoder layer's LoRA weights for one batch (no optimiser step)."""
    model.train()
    model.zero_grad()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if "layers.0." in name and "lora_A" in name}


def _infer(model, tokenizer) -> None:
    conversations = [formats.prompt_messages("How do I stop a frozen program?", "intent_label")]
    generation.generate(model, tokenizer, conversations, max_new_tokens=4, batch_size=1, desc="")


def test_inference_leaves_a_training_object_trainable_and_a_separate_instance_is_the_one_that_repacks():
    """The trap: bitsandbytes repacks a 4-bit layer for CPU inference on an eval-mode, no-grad pass,
    and training that object afterwards loses the gradients through the base weights. The kit's
    training objects keep the training layout; inference instances are separate objects."""
    from bitsandbytes.functional import has_avx512bf16
    from peft import get_peft_model

    settings = lora.LoraSettings(extra={"init_lora_weights": False})
    train_model, tokenizer = models.load_model(SMOKE_MODEL, quantize=True, trainable=True)
    train_model = get_peft_model(train_model, settings.to_peft())
    batch = tokenizer(["Intent: The user wants to bake bread.; Harm: safe"] * 2, return_tensors="pt")
    before = _lowest_lora_grads(train_model, batch)

    separate, _ = models.load_model(SMOKE_MODEL, quantize=True)  # loaded for inference, as evaluation loads it
    separate = get_peft_model(separate, settings.to_peft())
    _infer(separate, tokenizer)
    _infer(train_model, tokenizer)  # as the val-F1 curve and GRPO's snapshots do on the training object
    after = _lowest_lora_grads(train_model, batch)
    assert before.keys() == after.keys() and all(torch.allclose(before[k], after[k]) for k in before)

    def packed(model) -> bool:
        return any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))

    assert not packed(train_model)
    if not has_avx512bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes never repacks, there is no trap to show")
    assert packed(separate)  # the trap is real: training this object now would lose gradients
    with pytest.warns(UserWarning, match="autograd kernel was not registered"):
        separate_after = _lowest_lora_grads(separate, batch)
    assert not all(torch.allclose(before[k], separate_after[k]) for k in before)


def test_dpo_policy_and_reference_start_from_the_4bit_sft_adapter(sft_run, splits, tmp_path):
    from aims_kit.training.common import TrainSettings
    from aims_kit.training.dpo import DpoSettings, train_dpo

    # eval_steps 1: the log's first entry is step 1 alone, computed before any update
    settings = TrainSettings(learning_rate=1e-2, max_steps=2, batch_size=2, eval_steps=1, max_length=128, quantize=True)
    run_dir = results.create_run(tmp_path, "dpo", {"regime": "dpo"})
    trainer = train_dpo(sft_run, flipped_pairs(splits.train.head(4)), flipped_pairs(splits.val.head(2)),
                        settings=settings, dpo=DpoSettings(), run_dir=run_dir)
    assert _four_bit_layers(trainer.model) > 0
    first = next(e for e in trainer.state.log_history if "rewards/margins" in e)
    # reference = the frozen SFT adapter on the same 4-bit base. Not exactly 0 on a CPU without
    # AVX512-BF16 (measured 0.0018 there, <1e-6 with it): the policy's training pass and the
    # reference's no-grad pass round bf16 differently through bitsandbytes' 4-bit kernels.
    assert first["rewards/margins"] == pytest.approx(0.0, abs=5e-3)
    sft, dpo = _adapter(sft_run), _adapter(run_dir)
    assert sft.keys() == dpo.keys() and any(not torch.equal(sft[k], dpo[k]) for k in sft)


def test_distillation_steps_on_a_4bit_student(splits, tmp_path):
    params = {**PARAMS, "distill_max_rows": 8, "distill_max_steps": 2, "eval_steps": 2}
    params = DistillParams.from_params({**params, "distill_conditions": ("human_intent",), "teacher": "file"})
    trace_sets, _, teacher = experiments.distill_traces(params, splits)
    run_dir = experiments.distill_run(params, splits, trace_sets["human_intent"], teacher, tmp_path)
    _assert_nf4_run(run_dir)
    assert results.read_run_config(run_dir)["train"]["lora"]["r"] == 32
    assert all(tensor.abs().sum() > 0 for name, tensor in _adapter(run_dir).items() if "lora_B" in name)


def test_grpo_steps_train_the_4bit_policy(sft_run, splits, tmp_path, monkeypatch):
    """Rollouts are generated by the 4-bit policy during training. The tiny model never writes the
    format, so the kit's rewards give every rollout 0 and GRPO no advantage to learn from; a reward
    that grows with the rollout's length varies within each group, so training must move the
    adapter (two steps: the first runs at the warm-up's learning rate 0)."""
    from aims_kit.training import grpo, rewards

    def longer_is_better(completions, **columns):
        return [len(rewards.completion_text(c)) / 100 for c in completions]

    monkeypatch.setattr(grpo, "make_reward_set", lambda name, judge=None: rewards.RewardSet(name, {"format": longer_is_better}))
    params = {**PARAMS, "grpo_steps": 2, "grpo_eval_steps": 2, "grpo_num_generations": 2, "grpo_prompts_per_step": 2,
              "grpo_learning_rate": 1e-2, "grpo_temperature": 1.2, "grpo_val_limit": 4}
    run_dir = experiments.grpo_run(GRPOParams.from_params({**params, "sft_run": str(sft_run)}), splits, "label_only", tmp_path)
    _assert_nf4_run(run_dir)
    log = results.read_jsonl(run_dir / "reward_log.jsonl")
    assert len(log) == 2 and all(row["completion_tokens"] > 0 for row in log)
    assert [p["step"] for p in results.read_json(run_dir / "val_selection.json")["history"]] == [2]
    sft, policy = _adapter(sft_run), _adapter(run_dir)
    assert sft.keys() == policy.keys() and any(not torch.equal(sft[k], policy[k]) for k in sft)


def test_export_merges_a_4bit_run_into_a_full_precision_base(sft_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from aims_kit.serving.export import export_run

    out = export_run(sft_run, tmp_path / "guard")
    merged = AutoModelForCausalLM.from_pretrained(out)
    base, _ = models.load_model(SMOKE_MODEL, quantize=False)
    assert _four_bit_layers(merged) == 0 and getattr(merged.config, "quantization_config", None) is None
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    merged_weights, base_weights = merged.state_dict(), base.state_dict()
    assert any(not torch.equal(merged_weights[k], base_weights[k]) for k in base_weights if "layers." in k)  # the adapter is in

