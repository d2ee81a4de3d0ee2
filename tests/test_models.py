import torch

from aims_kit.models import loading as models
from aims_kit.models import lora, precision
from aims_kit.models import tiny as tiny_model


def test_tiny_model_is_built_once_and_loads_like_a_hub_model(tmp_path):
    folder = tiny_model.tiny_model_dir(tmp_path)
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    assert tiny_model.tiny_model_dir(tmp_path) == folder  # cached: same folder, not rebuilt
    model, tokenizer = models.load_model(str(folder))
    assert model.config.model_type == "qwen3"
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")


def test_tiny_model_build_is_deterministic(tmp_path):
    a = tiny_model.build(tmp_path / "a")
    b = tiny_model.build(tmp_path / "b")
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    ma, _ = models.load_model(str(a))
    mb, _ = models.load_model(str(b))
    for (name, pa), (_, pb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(pa, pb), name


def test_a_no_op_adapter_is_refused(tmp_path):
    from peft import get_peft_model

    model, tokenizer = models.load_model(str(tiny_model.tiny_model_dir(tmp_path)))
    peft_model = get_peft_model(model, lora.LoraSettings().to_peft())  # LoRA B starts at zero: no effect
    try:
        models.assert_adapter_active(peft_model, tokenizer)
    except RuntimeError as err:
        assert "not applied" in str(err)
    else:
        raise AssertionError("a zero adapter passed the check")


def test_quantisation_choice_on_this_machine():
    import torch

    config = precision.quantization_config(True)  # 4-bit wherever asked for, a CPU included
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype is precision.compute_dtype()  # QLoRA computes in the device policy's dtype
    assert precision.quantization_config(False) is None
    assert (precision.quantization_config(None) is not None) == precision.has_cuda()  # None: 4-bit on a GPU only
    assert precision.quantization_name(True) == precision.NF4_DOUBLE_QUANT and precision.quantization_name(False) == "none"


def test_inference_precision_policy(monkeypatch):
    import torch

    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    from aims_kit.models.precision import inference_precision

    native = inference_precision("cpu", fast_bf16=True)
    assert native.weights is torch.bfloat16 and native.autocast is torch.bfloat16 and native.compute_dtype == "bfloat16"
    emulated = inference_precision("cpu", fast_bf16=False)  # bf16 emulated on this CPU: slower than fp32
    assert emulated.weights is torch.float32 and emulated.autocast is None and emulated.compute_dtype == "float32"
    for gpu in (inference_precision("cuda", fast_bf16=True), inference_precision("cpu", fast_bf16=True, quantized=True)):
        assert gpu.weights is None and gpu.autocast is None  # as loaded: bf16 or NF4 with bf16 compute


def test_precision_can_be_forced_either_way_and_a_served_guard_follows_it(monkeypatch):
    import pytest

    monkeypatch.setattr(precision, "has_cuda", lambda: False)
    monkeypatch.setenv(precision.PRECISION_ENV, "fp32")
    assert precision.inference_precision("cpu", fast_bf16=True).compute_dtype == "float32"
    assert precision.serving_dtype() == "float32"
    monkeypatch.setenv(precision.PRECISION_ENV, "bf16")  # where bf16 is only emulated: reproduces a native-bf16 CPU
    assert precision.inference_precision("cpu", fast_bf16=False).compute_dtype == "bfloat16"
    assert precision.serving_dtype() == "bfloat16"
    monkeypatch.setenv(precision.PRECISION_ENV, "fp8")
    with pytest.raises(ValueError, match="AIMS_KIT_PRECISION"):
        precision.inference_precision("cpu", fast_bf16=True)


def test_prepared_model_gives_the_same_labels_and_records_its_precision(tmp_path, monkeypatch):
    import torch
    from run_factory import adapter_run

    from aims_kit.models import loading as models
    from aims_kit.notebook import experiments
    from aims_kit.scoring import evaluate as evaluation

    run = adapter_run(tmp_path, "label_only")
    frame = experiments.load_splits("", 22).test.head(12)
    reference, _ = models.load_trained(run)
    monkeypatch.setenv(precision.PRECISION_ENV, "fp32")  # fp32 on any CPU, whatever the suite pins: the merge alone
    merged = precision.prepare_for_inference(models.load_trained(run)[0])
    assert not hasattr(merged, "disable_adapter")  # merged into the base, no adapter left to skip
    tokenizer = models.load_tokenizer(models.resolve_model_id(models.TINY_RANDOM))
    ids = tokenizer("Is this prompt harmful?", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(reference(**ids).logits, merged(**ids).logits, atol=1e-4)  # merging changes no output
    metrics, _ = evaluation.evaluate(merged, tokenizer, frame, condition="label_only", dataset="t", n_boot=0, latency_sample=0)
    assert metrics["compute_dtype"] == "float32" and metrics["quantization"] == "none"
    assert metrics["label_method"] == "scored" and metrics["tokens_per_prompt"] == 0


def test_length_batches_respect_rows_and_padded_tokens():
    from aims_kit.inference.generation import length_batches

    lengths = [40, 500, 41, 42, 300, 39, 45, 44]
    batches = length_batches(lengths, batch_size=4, max_tokens=1000)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every row once
    for batch in batches:
        assert len(batch) <= 4 and (len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 1000)
    # shortest first; 300 still fits beside two short rows (3 x 300 padded tokens), 500 does not
    assert [[lengths[i] for i in b] for b in batches] == [[39, 40, 41, 42], [44, 45, 300], [500]]
