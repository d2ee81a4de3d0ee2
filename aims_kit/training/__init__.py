"""Training regimes: SFT (:mod:`.sft`), DPO, reasoning distillation and GRPO build on :mod:`.common`."""
