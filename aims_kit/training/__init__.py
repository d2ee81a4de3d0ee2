"""The four regimes (SFT, DPO and its pairs, distillation and its teachers, GRPO and its rewards) and the encoder baseline."""
