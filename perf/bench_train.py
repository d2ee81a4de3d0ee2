"""Training throughput of the kit's regimes, as tokens/s, % of this machine's matmul peak and ratios.

Each regime (SFT intent → label, a distillation student on the shipped ``human_intent`` traces,
DPO on pairs whose rejected answer flips the gold label) trains with the cpu profile's settings
(LoRA on the top ``--layers`` blocks, batches grouped by length, fp32 unless the CPU has native
bf16) once per path, from the same seed on the same records:

- ``every position``: TRL's fused LM head as it runs off a Triton GPU, projecting every position
  of the padded batch through the 49,152-word vocabulary (the kit's path until 2026-12);
- ``label positions``: projecting only the positions that carry a label, through TRL's tiles
  (:func:`aims_kit.training.lm_head.label_positions_only`, the kit's path until 2026-12-07);
- ``plain head``: label positions, projected in one piece on a CPU
  (:func:`aims_kit.training.lm_head.cpu_lm_head`, the kit's path until 2026-12-07);
- ``kit``: the kit's path, :func:`aims_kit.training.common.fit`: that head, and the frozen weights
  cast to bf16 once (:func:`aims_kit.models.frozen_casts.frozen_weights_cast_once`).

The per-step losses are printed side by side: a faster path must train the same model. The
peak is a large matmul timed here in the precision training computes in, so "% of peak" is
against this machine's own limit. FLOPs per step are estimated from the parameter count
(2 x parameters x tokens forward, DPO's reference forward too, plus the backward through the LoRA
blocks and the head). ``grpo`` times GRPO's policy update apart from its rollouts (:func:`grpo_update`).

    python perf/bench_train.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--steps 8] [--regimes sft,distill,dpo,grpo]
    python perf/bench_train.py --paths "plain head,kit"   # the cast-once lever alone
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch

from aims_kit.datasets import formats
from aims_kit.models.loading import load_model
from aims_kit.models.lora import LoraSettings
from aims_kit.notebook import experiments
from aims_kit.training.common import TrainSettings, kit_training, trainer_kwargs
from aims_kit.training.dpo import length_grouped
from aims_kit.training.dpo_pairs import dpo_records
from aims_kit.training.lm_head import cpu_lm_head, label_positions_only
from aims_kit.training.sft import sft_records
from aims_kit.training.teachers import TracesFileTeacher
from aims_kit.models.precision import matmul_peak


def regime_records(regime: str, seed: int) -> tuple[list[dict], str]:
    """The training records of one regime, and the TRL trainer that takes them."""
    splits = experiments.load_splits("", seed)
    if regime == "sft":
        return sft_records(splits.train, "intent_label"), "sft"
    if regime == "distill":
        traces = TracesFileTeacher().traces(splits.train, "human_intent")
        frame = splits.train.set_index(splits.train["ID"].astype(str)).loc[[t.id for t in traces]].reset_index(drop=True)
        return sft_records(frame, "reasoning_intent_label", [t.completion for t in traces]), "sft"
    train = splits.train
    flip = {"harmful": "safe", "safe": "harmful"}
    pairs = pd.DataFrame({
        "prompt": train["Prompt"],
        "chosen": [formats.format_target("intent_label", label, intent=i) for i, label in zip(train["Intent"], train["label"])],
        "rejected": [formats.format_target("intent_label", flip[label], intent=i) for i, label in zip(train["Intent"], train["label"])],
    })
    return dpo_records(pairs), "dpo"


def parameters_and_backward_share(model) -> tuple[int, float]:
    """All parameters, and the share of them the backward pass multiplies by: the adapted blocks and the head.

    LoRA on the top blocks stops backpropagation below the lowest adapted block; the head (tied
    to the embedding in SmolLM2) is always on the backward path.
    """
    import re

    def block(name: str) -> int | None:
        found = re.search(r"layers\.(\d+)\.", name)
        return int(found.group(1)) if found else None

    base = {name: (p.numel(), block(name)) for name, p in model.named_parameters() if "lora_" not in name}
    adapted = {block(name) for name, p in model.named_parameters() if p.requires_grad} - {None}
    lowest = min(adapted, default=0)
    total = sum(n for n, _ in base.values())
    blocks = sum(n for n, index in base.values() if index is not None and index >= lowest)
    head = model.get_output_embeddings().weight.numel()
    return total, (blocks + head) / total


#: The paths compared: name -> the context a training runs in, given its model.
PATHS = {"every position": lambda model: nullcontext(), "label positions": lambda model: label_positions_only(),
         "plain head": lambda model: cpu_lm_head(), "kit": kit_training}


def train(model_name: str, settings: TrainSettings, records: list[dict], kind: str, head) -> dict:
    """``settings.max_steps`` steps; seconds per step after the first, tokens per step, per-step losses."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    model, tokenizer = load_model(model_name, trainable=True)
    kwargs = {**trainer_kwargs(settings, Path(tempfile.mkdtemp()), with_eval=False), "save_strategy": "no", "logging_steps": 1}
    if kind == "sft":
        config = SFTConfig(**kwargs, max_length=settings.max_length, completion_only_loss=True,
                           train_sampling_strategy="group_by_length")
        trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer, peft_config=settings.lora.to_peft(model),
                             train_dataset=Dataset.from_list(records))
    else:
        from peft import get_peft_model
        from transformers import set_seed

        # PEFT draws the adapter's initial weights from the global generator: seeded here as TRL's SFT trainer
        # seeds before it wraps a model, or the first DPO training in a process starts from other weights
        # than every later one (its losses parted from step 3 on, 0.6766 against 0.6848)
        config = DPOConfig(**kwargs, max_length=settings.max_length, beta=0.3)
        set_seed(config.seed)
        model = get_peft_model(model, settings.lora.to_peft(model))
        trainer = length_grouped(DPOTrainer)(model=model, args=config, processing_class=tokenizer,
                                             train_dataset=Dataset.from_list(records))

    tokens, stamps = [], []
    compute_loss = trainer.compute_loss

    def counting(model, inputs, *args, **kw):
        mask = inputs.get("attention_mask")
        tokens.append(int(mask.sum()) if mask is not None else inputs["input_ids"].numel())
        return compute_loss(model, inputs, *args, **kw)

    class _Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    trainer.compute_loss = counting
    trainer.remove_callback(PrinterCallback)  # disable_tqdm's per-log dicts: the losses are printed below
    trainer.add_callback(_Clock())
    start = time.perf_counter()
    with head(trainer.model):
        trainer.train()
    # The first step warms allocators and caches: timed from its end, and its tokens left out with it
    # (a length-grouped sampler puts the longest batch first).
    seconds = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else stamps[-1] - start
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"s_per_step": seconds, "tokens_per_step": _after_first(tokens), "losses": losses,
            "params": parameters_and_backward_share(trainer.model)}


def step_gflop(tokens: float, model_params: int, backward_share: float, forwards: int = 1) -> float:
    """Estimated GFLOPs of one step with every position projected: ``forwards`` passes over every
    parameter (DPO's reference model adds one: the adapter disabled, the same tokens), the
    backward's input gradients through the adapted share (LoRA's own weights are negligible).
    The label-positions path does less work for the same tokens, so its figure is the useful rate."""
    return 2 * model_params * tokens * (forwards + backward_share) / 1e9


#: Forward passes per step over the step's tokens: DPO also runs its reference model on them.
FORWARDS = {"sft": 1, "distill": 1, "dpo": 2, "grpo": 1}


def grpo_update(model_name: str, steps: int, layers: int) -> dict:
    """GRPO's policy update alone: seconds per step less its rollouts and scoring, and its tokens.

    A step of TRL's GRPO trainer first samples and scores (rollouts through the kit's shared-prompt
    decoding, rewards, the reference's log-probabilities for the KL term), then runs the policy
    forward and backward on those prompts and completions. Both are timed inside the kit's own
    ``train_grpo`` (cpu profile's shape: 4 prompts x 4 rollouts, 48 tokens, LoRA on the top
    ``layers`` blocks of the base, label-only reward); the first step warms up and is left out.
    """
    from aims_kit.notebook import experiments
    from aims_kit.training import grpo

    splits = experiments.load_splits("", 22)
    scoring, update, tokens, losses = [], [], [], []
    make = grpo.shared_prompt_trainer

    def timed(base: type) -> type:
        class Timed(make(base)):
            def _generate_and_score_completions(self, inputs):
                start = time.perf_counter()
                out = super()._generate_and_score_completions(inputs)
                scoring.append(time.perf_counter() - start)
                tokens.append(int(out["prompt_mask"].sum() + out["completion_mask"].sum()))
                return out

            def training_step(self, model, inputs, num_items_in_batch=None):
                start, before = time.perf_counter(), len(scoring)
                loss = super().training_step(model, inputs, num_items_in_batch)
                update.append(time.perf_counter() - start - sum(scoring[before:]))
                losses.append(float(loss))
                return loss

        return Timed

    settings = grpo.GRPOSettings(reward_set="label_only", start="base", num_generations=4, prompts_per_step=4,
                                 temperature=1.0, learning_rate=1e-4, steps=steps, eval_steps=steps, val_limit=8,
                                 max_completion_length=48, lora=LoraSettings(top_layers=layers))
    grpo.shared_prompt_trainer = timed
    try:
        trainer = grpo.train_grpo(model_name, splits.train, splits.val, settings=settings, run_dir=Path(tempfile.mkdtemp()))
    finally:
        grpo.shared_prompt_trainer = make
    return {"s_per_step": _after_first(update), "scoring_s": _after_first(scoring), "tokens_per_step": _after_first(tokens),
            "losses": losses, "params": parameters_and_backward_share(trainer.model)}


def _after_first(values: list[float]) -> float:
    """The mean of ``values`` without the first (the warm-up step), or the first where it is alone."""
    kept = values[1:] or values
    return sum(kept) / len(kept)


def rate(run: dict, regime: str, peak: float) -> str:
    """A run's seconds per step, tokens/s and estimated GFLOP/s as a share of ``peak``."""
    gflops = step_gflop(run["tokens_per_step"], *run["params"], FORWARDS[regime]) / run["s_per_step"]
    return (f"{run['s_per_step']:6.2f} s/step  {run['tokens_per_step'] / run['s_per_step']:7.0f} tokens/s"
            f"  ~{gflops:5.0f} GFLOP/s = {100 * gflops / peak:3.0f}% of peak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--layers", type=int, default=10, help="LoRA on the top N blocks (the cpu profile's lora_layers)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1,
                        help="time the paths in turns this many times (a shared machine's speed drifts between runs)")
    parser.add_argument("--regimes", default="sft,distill,dpo,grpo")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help="which paths to time, of: " + ", ".join(PATHS) + " (the first is the baseline of the ratios)")
    args = parser.parse_args()
    settings = TrainSettings(learning_rate=1e-3, max_steps=args.steps, batch_size=args.batch_size, eval_steps=args.steps,
                             lora=LoraSettings(top_layers=args.layers))
    dtype = getattr(torch, settings.compute_dtype)
    peak = matmul_peak(dtype)
    print(f"matmul peak here: {peak:,.0f} GFLOP/s in {dtype} ({torch.get_num_threads()} threads)")
    for regime in args.regimes.split(","):
        if regime == "grpo":
            run = grpo_update(args.model, args.steps, args.layers)
            print(f"\ngrpo: 4 prompts x 4 rollouts a step, {args.steps} steps, {dtype}\n"
                  f"  policy update: {rate(run, regime, peak)}\n"
                  f"  rollouts, rewards and the reference's log-probabilities before it: {run['scoring_s']:6.2f} s/step\n"
                  f"  loss per step: {' '.join(f'{loss:.4f}' for loss in run['losses'])}")
            continue
        records, kind = regime_records(regime, 22)
        paths = args.paths.split(",")
        runs = [(label, train(args.model, settings, records, kind, PATHS[label])) for _ in range(args.rounds) for label in paths]
        print(f"\n{regime}: {len(records)} records, batch {args.batch_size}, {args.steps} steps, {dtype}")
        for label, run in runs:
            print(f"  {label:>16}: {rate(run, regime, peak)}")
        if len(paths) < 2:
            continue
        for start in range(0, len(runs), len(paths)):  # each round's ratios against its own baseline
            base = runs[start][1]
            for label, run in runs[start + 1:start + len(paths)]:
                print(f"  speed ratio {label} / {paths[0]}: {base['s_per_step'] / run['s_per_step']:.2f}x")
        print(f"  loss per step ({' | '.join(label for label, _ in runs)}):")
        for step, losses in enumerate(zip(*(run["losses"] for _, run in runs)), start=1):
            print(f"    {step:3d}  " + " | ".join(f"{loss:.4f}" for loss in losses))

if __name__ == "__main__":
    main()
