"""Sampling k answers per prompt (DPO pair mining, GRPO rollouts): ``model.generate`` against the kit's shared prompt pass.

Both paths draw k samples at temperature T for the same prompts, one after the other in this
process, with the same seed:

- **model.generate**: ``num_return_sequences=k``, every copy of every prompt through the prompt
  pass, finished rows kept in the batch to the end (what DPO mining and TRL's GRPO rollouts did);
- **kit**: :func:`aims_kit.inference.generation.decode_batch`, each prompt's pass once (the batch's
  common prefix once too), its cache repeated k times, finished rows dropped.

It prints this machine's matmul peak in the dtype the model computes in, then per path: seconds,
generated tokens/s, prompt tokens computed per sample, the arithmetic's share of the peak, and the
speed-up; then how alike the two samples are (format and label shares, which agree only in
distribution: the paths draw the same tokens only until a row finishes).

    python perf/bench_sampling.py                      # SmolLM2-135M-Instruct, 32 val prompts, k=4, T=1.0
    python perf/bench_sampling.py --run RUNS/sft-intent_label-…   # a trained SFT run (the rollouts' start)
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_inference import parameter_counts

from aims_kit.datasets import formats
from aims_kit.inference import generation
from aims_kit.models import loading as models
from aims_kit.models import precision
from aims_kit.notebook import experiments
from aims_kit.notebook.doctor import cpu_bf16_note as doctor_bf16
from aims_kit.models.precision import cpu_name, matmul_peak


def sample(path: str, model, tokenizer, ids: list[list[int]], k: int, temperature: float, budget: int, batch: int, seed: int):
    """(seconds, outputs) of one path over ``ids`` in batches of ``batch`` prompts."""
    eos, pad = generation._eos_ids(model, tokenizer), tokenizer.pad_token_id
    torch.manual_seed(seed)
    outputs = []
    start = time.perf_counter()
    with torch.inference_mode(), precision.inference_autocast(model):
        for i in range(0, len(ids), batch):
            part = ids[i:i + batch]
            if path == "model.generate":
                outputs += generation._generate_batch(model, part, pad, eos, None, budget, True, temperature, k)
            else:
                outputs += generation.decode_batch(model, tokenizer, part, pad, eos, (), budget, k=k, temperature=temperature,
                                                   top_k=generation.sampling_top_k(model))
    return time.perf_counter() - start, [generation._until_eos(seq, [*eos, pad]) for seq in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--run", default="", help="a trained run folder (its merged adapter) instead of the bare model")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8, help="prompts per batch (each with k samples)")
    args = parser.parse_args()

    model, tokenizer = models.load_for_inference(args.run) if args.run else models.load_model(args.model)
    model = precision.prepare_for_inference(model) if not args.run else model
    dtype = precision.model_precision(model).compute_dtype
    peak = matmul_peak(getattr(torch, dtype) if dtype in ("bfloat16", "float32") else torch.float32)
    params, head = parameter_counts(model)
    val = experiments.load_splits("", 22).val.head(args.prompts)
    ids = generation.encode_inputs(tokenizer, [formats.prompt_messages(p, "intent_label") for p in val["Prompt"]])
    prompt_tokens = sum(len(x) for x in ids)
    print(f"{cpu_name()}: {doctor_bf16()}; matmul peak {peak:.0f} GFLOP/s "
          f"({dtype}); {len(ids)} val prompts × k={args.k} at T={args.temperature}, budget {args.max_new_tokens}, "
          f"{prompt_tokens / len(ids):.0f} prompt tokens/prompt")
    timed = {}
    for path in ("model.generate", "kit"):
        sample(path, model, tokenizer, ids[:2], args.k, args.temperature, 4, args.batch, 0)  # warm-up
        seconds, outputs = sample(path, model, tokenizer, ids, args.k, args.temperature, args.max_new_tokens, args.batch, 7)
        new = sum(len(o) for o in outputs)
        computed_prompt = prompt_tokens * (args.k if path == "model.generate" else 1)
        gflop = (2 * params * (computed_prompt + new) + 2 * head * new) / 1e9
        texts = [tokenizer.decode(o, skip_special_tokens=True) for o in outputs]
        parsed = [formats.parse_output(t) for t in texts]
        timed[path] = seconds
        print(f"{path:>15}: {seconds:6.1f} s, {new / seconds:7.1f} generated tokens/s, "
              f"{computed_prompt / len(outputs):5.1f} prompt tokens computed per sample, {gflop / seconds:6.1f} GFLOP/s "
              f"({100 * gflop / seconds / peak:.0f}% of peak); format {sum(p.ok for p in parsed) / len(parsed):.2f}, "
              f"harmful {sum(p.label == 'harmful' for p in parsed) / len(parsed):.2f}, "
              f"{new / len(outputs):.1f} tokens/sample")
    print(f"speed-up of the shared prompt pass: {timed['model.generate'] / timed['kit']:.2f}x")


if __name__ == "__main__":
    main()
