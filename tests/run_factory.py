"""Run folders and DPO pairs for tests that need them fast: a random but non-zero LoRA adapter, no training."""

from pathlib import Path

import pandas as pd

from aims_kit.core import profiles, results
from aims_kit.datasets import formats
from aims_kit.models import loading as models
from aims_kit.models import lora

SMOKE_MODEL = profiles.PROFILES["smoke"]["model"]


def adapter_run(out: Path, condition: str = "intent_label", profile: str = "smoke") -> Path:
    """A run folder whose adapter changes the smoke model's outputs (``init_lora_weights=False``)."""
    from peft import get_peft_model

    config = {"regime": "sft", "condition": condition, "model": SMOKE_MODEL, "profile": profile, "seed": 22}
    run = results.create_run(out, f"sft-{condition}", config)
    model, _ = models.load_model(SMOKE_MODEL)
    adapter = get_peft_model(model, lora.LoraSettings(extra={"init_lora_weights": False}).to_peft())
    adapter.save_pretrained(str(run / "adapter"))
    return run


def flipped_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """DPO pairs for AIMS rows without mining: chosen = the gold target, rejected = another intent with the other label."""
    flipped = frame["label"].map({"harmful": "safe", "safe": "harmful"})
    return pd.DataFrame({
        "id": frame["ID"], "prompt": frame["Prompt"], "split": frame["split"], "gold_label": frame["label"],
        "chosen": [formats.format_target("intent_label", l, intent=i) for l, i in zip(frame["label"], frame["Intent"])],
        "rejected": [formats.format_target("intent_label", l, intent="something else") for l in flipped],
    })
