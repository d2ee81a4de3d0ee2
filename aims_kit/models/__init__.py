"""Where weights come from and how they load: hub or local folders, the offline GGUF default, the tiny test model, precision, QLoRA, LoRA."""
