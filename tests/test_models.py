import torch

from aims_kit import models, tiny_model


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
    peft_model = get_peft_model(model, models.LoraSettings().to_peft())  # LoRA B starts at zero: no effect
    try:
        models.assert_adapter_active(peft_model, tokenizer)
    except RuntimeError as err:
        assert "not applied" in str(err)
    else:
        raise AssertionError("a zero adapter passed the check")


def test_quantisation_choice_on_this_machine():
    import pytest

    if models.has_cuda():
        config = models.quantization_config(None)
        assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    else:
        assert models.quantization_config(None) is None
        with pytest.raises(RuntimeError, match="CUDA"):
            models.quantization_config(True)
