"""Run folders for tests that need a trained-looking run fast: a random but non-zero LoRA adapter, no training."""

from pathlib import Path

from aims_kit import models, profiles, results

SMOKE_MODEL = profiles.PROFILES["smoke"]["model"]


def adapter_run(out: Path, condition: str = "intent_label", profile: str = "smoke") -> Path:
    """A run folder whose adapter changes the smoke model's outputs (``init_lora_weights=False``)."""
    from peft import get_peft_model

    config = {"regime": "sft", "condition": condition, "model": SMOKE_MODEL, "profile": profile, "seed": 22}
    run = results.create_run(out, f"sft-{condition}", config)
    model, _ = models.load_model(SMOKE_MODEL)
    adapter = get_peft_model(model, models.LoraSettings(extra={"init_lora_weights": False}).to_peft())
    adapter.save_pretrained(str(run / "adapter"))
    return run
