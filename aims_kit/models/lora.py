"""LoRA settings: the paper's adapter hyper-parameters, and which linear layers they wrap."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LoraSettings:
    """LoRA hyper-parameters. Defaults are the paper's (docs/design.md); distillation used r=32, α=64."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    #: ``all-linear`` adapts every linear layer but the LM head, as QLoRA recommends.
    target_modules: str | list[str] = "all-linear"
    #: Adapt only the top N decoder layers (0: all). On a CPU this is the main speed lever:
    #: backpropagation then stops N layers below the output instead of running through the
    #: whole network, and the top layers are where a classifier's decision is formed.
    top_layers: int = 0
    extra: dict = field(default_factory=dict)

    def to_peft(self, model=None):
        """The PEFT config; ``top_layers`` needs the ``model`` to name its layers and linear modules."""
        from peft import LoraConfig

        targets, layers = self.target_modules, None
        if self.top_layers:
            if model is None:
                raise ValueError("LoraSettings.top_layers needs the model to pick its layers")
            n_layers = model.config.num_hidden_layers
            layers = list(range(max(0, n_layers - self.top_layers), n_layers))
            # PEFT's layers_to_transform does not combine with "all-linear": name the modules.
            targets = decoder_linear_names(model) if self.target_modules == "all-linear" else self.target_modules
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            layers_to_transform=layers,
            task_type="CAUSAL_LM",
            **self.extra,
        )


def decoder_linear_names(model) -> list[str]:
    """Short names of the linear modules inside the decoder layers (``q_proj``, ``up_proj``, ...)."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    if not names:
        raise ValueError(f"{type(model).__name__}: no linear modules found inside decoder layers")
    return sorted(names)
