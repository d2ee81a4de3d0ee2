"""One device policy decides what every engine and trainer computes in; tests simulate the devices."""

import pytest
import torch

from aims_kit.core.params import RunParams
from aims_kit.inference import vllm as vllm_backend
from aims_kit.models import precision
from aims_kit.notebook import experiments
from aims_kit.training.common import trainer_kwargs


@pytest.fixture(autouse=True)
def _auto(monkeypatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_cuda_capability_picks_bf16_from_ampere_and_fp16_below(capability, expected):
    assert precision.compute_dtype("cuda", capability=capability) == expected


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_cpu_computes_in_bf16_only_where_native(native, expected):
    assert precision.compute_dtype("cpu", fast_bf16=native) == expected


def test_the_environment_overrides_the_policy_and_fp16_is_refused_on_a_cpu(monkeypatch):
    monkeypatch.setenv(precision.PRECISION_ENV, "fp32")
    assert precision.compute_dtype("cuda", capability=(9, 0)) == torch.float32
    monkeypatch.setenv(precision.PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match="CUDA"):
        precision.compute_dtype("cpu", fast_bf16=True)


@pytest.mark.parametrize("dtype, flags", [(torch.bfloat16, {"bf16": True, "fp16": False}),
                                          (torch.float16, {"bf16": False, "fp16": True}),
                                          (torch.float32, {"bf16": False, "fp16": False})])
def test_trl_flags_follow_the_policy(monkeypatch, tmp_path, dtype, flags):
    monkeypatch.setattr(precision, "compute_dtype", lambda *a, **k: dtype)
    from aims_kit.training import common

    monkeypatch.setattr(common, "policy_dtype", lambda *a, **k: dtype)
    settings = experiments.train_settings(RunParams(gradient_accumulation_steps=4, batch_size=8), "label_only")
    kwargs = trainer_kwargs(settings, tmp_path)
    assert {k: kwargs[k] for k in ("bf16", "fp16")} == flags
    assert kwargs["gradient_accumulation_steps"] == 4
    assert settings.precision()["compute_dtype"] == precision.dtype_name(dtype)


def test_a_4bit_base_computes_in_the_policys_dtype(monkeypatch):
    monkeypatch.setattr(precision, "compute_dtype", lambda *a, **k: torch.float16)
    assert precision.quantization_config(True).bnb_4bit_compute_dtype == torch.float16


@pytest.mark.parametrize("capability, dtype", [((7, 5), "float16"), ((8, 0), "bfloat16")])
def test_vllm_engine_settings_fit_the_profile_and_the_device(capability, dtype):
    settings = vllm_backend.engine_settings("meta-llama/Llama-3.1-8B-Instruct", max_lora_rank=16, gpu_memory_utilization=0.35,
                                            context=131072, capability=capability)
    assert settings["dtype"] == dtype  # a T4 gets fp16: vLLM refuses bf16 below compute capability 8.0
    assert settings["max_model_len"] == vllm_backend.MAX_MODEL_LEN < 131072  # not the model's whole context
    assert settings["gpu_memory_utilization"] == 0.35 and settings["max_lora_rank"] == 32
    assert settings["trust_remote_code"] is False and settings["max_logprobs"] >= vllm_backend.TOP_LOGPROBS
    assert vllm_backend.engine_settings("m", max_lora_rank=16, context=2048)["max_model_len"] == 2048  # never past the model's own
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        vllm_backend.engine_settings("m", max_lora_rank=16, gpu_memory_utilization=1.5)


def test_grpo_rolls_out_through_transformers_for_a_4bit_policy(monkeypatch):
    import importlib.machinery
    import sys
    import types

    from aims_kit.training import grpo

    fake = types.ModuleType("vllm")
    fake.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(grpo, "has_cuda", lambda: True)
    assert grpo.rollout_engine(quantize=False)[0] is True
    uses, why = grpo.rollout_engine(quantize=True)
    assert uses is False and "4-bit" in why
    monkeypatch.setattr(grpo, "has_cuda", lambda: False)
    assert grpo.rollout_engine(quantize=False)[0] is False


def test_doctor_names_the_dtype_and_profile_here_and_refuses_a_profile_that_cannot_fit(capsys):
    from aims_kit import __main__ as cli

    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"computes in:   {precision.dtype_name(precision.compute_dtype())}" in out
    assert "recommended:   profile 'cpu'" in out  # no GPU on the test machine
    assert cli.main(["doctor", "--profile", "paper", "--gpu-memory", "16"]) == 1
    out = capsys.readouterr().out
    assert "error: profile 'paper' does not fit 16 GiB" in out and "TOO BIG dpo" in out
    assert cli.main(["doctor", "--profile", "gpu-small", "--gpu-memory", "16"]) == 0  # a T4 holds the workshop profile


def test_memory_estimates_grow_with_the_batch_and_shrink_in_4bit():
    from aims_kit.core.profiles import PROFILES
    from aims_kit.models import memory

    base = memory.estimate(PROFILES["paper"], 80)
    bigger = memory.estimate({**PROFILES["paper"], "batch_size": 32}, 80)
    full = memory.estimate({**PROFILES["paper"], "quantize": False}, 80)
    assert bigger["sft"]["total"] > base["sft"]["total"] and bigger["dpo"]["activations"] == 2 * bigger["sft"]["activations"]
    assert full["sft"]["weights"] > 2.5 * base["sft"]["weights"]  # 16-bit vs NF4
    with pytest.raises(ValueError, match="no shape known"):
        memory.model_shape("someone/unknown-model")


@pytest.mark.parametrize("amx, avx512_bf16, speedup, fast", [
    (True, True, 0.5, True),      # AMX: bf16 always pays, no probe needed
    (False, True, 2.4, True),     # AVX512-BF16 measured faster (the AMD EPYC kind)
    (False, True, 0.61, False),   # AVX512-BF16 measured slower (the Intel Xeon kind without AMX)
    (False, False, 9.0, False),   # emulated bf16: never
])
def test_bf16_on_a_cpu_is_chosen_by_what_it_measures(monkeypatch, amx, avx512_bf16, speedup, fast):
    flags = {"_is_amx_tile_supported": amx, "_is_avx512_bf16_supported": avx512_bf16}
    monkeypatch.setattr(precision, "_cpu_supports", lambda name: flags[name])
    monkeypatch.setattr(precision, "bf16_speedup", lambda: speedup)
    assert precision.cpu_has_fast_bf16() is fast
    assert precision.compute_dtype("cpu") == (torch.bfloat16 if fast else torch.float32)


@pytest.mark.parametrize("cpuinfo, name", [
    # a VM that names only the vendor's line: the family and model numbers tell its generations apart
    ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n\n"
     "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: Another\n", "AMD EPYC (cpu family 26, model 2)"),
    ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: fpu amx_tile\n",
     "Intel(R) Xeon(R) Platinum 8488C"),
    ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n", None),  # ARM names no model: platform's name instead
])
def test_a_cpu_is_named_by_its_first_processor_with_family_and_model(cpuinfo, name):
    assert precision.cpu_name_in(cpuinfo) == name


def test_the_bf16_probe_measures_a_positive_ratio_once():
    ratio = precision.bf16_speedup()
    assert ratio > 0 and precision.bf16_speedup() == ratio  # cached: one probe per process


@pytest.mark.parametrize("policy_dtype", [torch.bfloat16, torch.float32])
def test_validation_decodes_a_merged_copy_in_the_policys_dtype_and_leaves_the_trained_model_alone(monkeypatch, policy_dtype):
    from peft import PeftModel, get_peft_model
    from run_factory import SMOKE_MODEL

    from aims_kit.models import loading, lora

    monkeypatch.setattr(precision, "model_precision",
                        lambda model: precision.InferencePrecision(weights=policy_dtype, autocast=policy_dtype))
    base, _ = loading.load_model(SMOKE_MODEL)
    trained = get_peft_model(base.float(), lora.LoraSettings(extra={"init_lora_weights": False}).to_peft())
    ids = torch.arange(3, 11).reshape(1, 8)
    with torch.no_grad():
        expected = trained(input_ids=ids).logits.float()
    copy = precision.inference_copy(trained)
    if policy_dtype == torch.float32:  # the policy keeps what training holds: no second model
        assert copy is trained
        return
    assert copy is not trained and not isinstance(copy, PeftModel)
    assert {p.dtype for p in copy.parameters()} == {torch.bfloat16}
    assert not any("lora_" in name for name, _ in copy.named_parameters())
    assert isinstance(trained, PeftModel) and {p.dtype for p in trained.parameters()} == {torch.float32}
    with torch.no_grad():
        assert torch.equal(trained(input_ids=ids).logits.float(), expected)  # the trained model is untouched
        merged = copy(input_ids=ids).logits.float()
    torch.testing.assert_close(merged, expected, rtol=0.05, atol=0.05)  # the adapter's effect, in bf16


def test_a_policy_holding_a_ref_adapter_is_validated_with_its_trained_adapter_merged(monkeypatch):
    """GRPO's policy also holds TRL's frozen "ref" adapter for the KL term: the copy merges the active one only."""
    from peft import get_peft_model
    from run_factory import SMOKE_MODEL

    from aims_kit.models import loading, lora

    monkeypatch.setattr(precision, "model_precision",
                        lambda model: precision.InferencePrecision(weights=torch.bfloat16, autocast=torch.bfloat16))
    base, _ = loading.load_model(SMOKE_MODEL)
    policy = get_peft_model(base.float(), lora.LoraSettings(extra={"init_lora_weights": False}).to_peft())
    torch.manual_seed(7)
    policy.add_adapter("ref", lora.LoraSettings(extra={"init_lora_weights": False}).to_peft())
    ids = torch.arange(3, 11).reshape(1, 8)
    with torch.no_grad():
        policy.set_adapter("ref")
        ref = policy(input_ids=ids).logits.float()
        policy.set_adapter("default")
        trained = policy(input_ids=ids).logits.float()
        merged = precision.inference_copy(policy)(input_ids=ids).logits.float()
    assert (trained - ref).abs().max() > 0.3  # the two adapters answer differently
    torch.testing.assert_close(merged, trained, rtol=0.05, atol=0.05)


def test_the_validation_copy_runs_its_own_forward_when_a_trainer_patched_the_models(monkeypatch):
    """TRL's trainers replace ``forward`` on the instance with a closure over the original model's forward:
    a deep copy kept calling the trained model. The copy must compute with its own merged weights."""
    from peft import get_peft_model
    from run_factory import SMOKE_MODEL
    from trl.trainer import add_fused_lm_head

    from aims_kit.models import loading, lora

    monkeypatch.setattr(precision, "model_precision",
                        lambda model: precision.InferencePrecision(weights=torch.bfloat16, autocast=torch.bfloat16))
    base, _ = loading.load_model(SMOKE_MODEL)
    base = base.float()
    add_fused_lm_head(base)  # what SFT, DPO and GRPO trainers do before wrapping with PEFT
    assert "forward" in vars(base)
    trained = get_peft_model(base, lora.LoraSettings(extra={"init_lora_weights": False}).to_peft())
    copy = precision.inference_copy(trained)
    calls = []
    trained.get_base_model().model.register_forward_hook(lambda *args: calls.append(1))  # after the copy: not copied
    ids = torch.arange(3, 11).reshape(1, 8)
    with torch.no_grad():
        logits = copy(input_ids=ids).logits
        trained(input_ids=ids)
    assert len(calls) == 1  # the trained model ran once: for its own call, not for the copy's
    assert logits.dtype == torch.bfloat16  # computed by the bf16 copy, not by the fp32 model under autocast
    assert "forward" in vars(base)  # the trained model keeps its fused head for training
