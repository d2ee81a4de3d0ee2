"""The tiny random model: a 0.85M-parameter Qwen3-shaped causal LM the kit builds offline in seconds.

It exists for speed only: the ``smoke`` profile and the tests use it so every notebook and
trainer runs end to end in seconds. Its weights are random, so it learns the output format but
never the decision (its intents read "a of a of a"); the ``cpu`` default uses a real pretrained
model instead (:mod:`aims_kit.models.loading`, SmolLM2-135M-Instruct).

No hub is needed: a byte-level BPE tokenizer is trained on the kit's own text (the shipped
sample's prompts and intents, the reference traces and the format instructions) and a small
Qwen3 config is initialised from a fixed seed. Both are saved with ``save_pretrained`` into a
folder that :func:`aims_kit.models.loading.load_model` then opens with ``from_pretrained``, exactly as it
opens a hub model. The folder name carries a hash of everything that shapes the model, so a
changed recipe builds a new folder instead of silently reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from aims_kit.core.paths import outputs_dir
from aims_kit.core.results import share_like_umask
from aims_kit.datasets import formats
from aims_kit.datasets.aims import SAMPLE_PATH, TRACES_PATH

#: Everything that shapes the model. Change a value and a new folder is built.
RECIPE = {
    "version": 1,
    "vocab_size": 3000,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 2048,
    "seed": 22,
}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
#: ChatML, as Qwen models use; ``{% generation %}`` marks assistant text for assistant-only loss.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}{{- message['content'] + '<|im_end|>' }}{%- endif %}"
    "{{- '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def corpus() -> list[str]:
    """The kit's own text the tokenizer learns from. Labels are not used, only words."""
    import pandas as pd

    frame = pd.read_csv(SAMPLE_PATH, dtype=str, keep_default_na=False)
    texts = list(frame["Prompt"]) + list(frame["Intent"])
    if TRACES_PATH.exists():
        with TRACES_PATH.open(encoding="utf-8") as handle:
            texts += [json.loads(line)["completion"] for line in handle if line.strip()]
    texts += [formats.instruction(c) for c in formats.CONDITIONS]
    texts += ["Intent: ; Harm: harmful", "Intent: ; Harm: safe", "Prompt harm: harmful", "Prompt harm: safe"] * 50
    return texts


def recipe_hash() -> str:
    digest = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode())
    digest.update(SAMPLE_PATH.read_bytes())
    if TRACES_PATH.exists():
        digest.update(TRACES_PATH.read_bytes())
    return digest.hexdigest()[:12]


def tiny_model_dir(cache_dir: Path | None = None) -> Path:
    """The folder of the tiny random model, built on first use (a few seconds) and reused after."""
    root = Path(cache_dir) if cache_dir else outputs_dir() / "models"
    target = root / f"aims-tiny-qwen3-{recipe_hash()}"
    if not (target / "config.json").exists():
        build(target)
    return target


def build(target: Path) -> Path:
    """Train the tokenizer, initialise the model and save both; atomic (a temp folder, then rename)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=RECIPE["vocab_size"],
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        bpe.train_from_iterator(corpus(), trainer=trainer)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            additional_special_tokens=["<|im_start|>"],
        )
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.save_pretrained(staging)

        config = Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=RECIPE["hidden_size"],
            intermediate_size=RECIPE["intermediate_size"],
            num_hidden_layers=RECIPE["num_hidden_layers"],
            num_attention_heads=RECIPE["num_attention_heads"],
            num_key_value_heads=RECIPE["num_key_value_heads"],
            head_dim=RECIPE["head_dim"],
            max_position_embeddings=RECIPE["max_position_embeddings"],
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(RECIPE["seed"])
        model = Qwen3ForCausalLM(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(staging, safe_serialization=True)
        (staging / "RECIPE.json").write_text(json.dumps(RECIPE, indent=2))
        try:
            share_like_umask(staging)  # mkdtemp made it 0700
            os.replace(staging, target)
        except OSError:  # another process built it first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
