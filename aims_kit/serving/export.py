"""Export a trained run as a standalone model folder: LoRA merged in, ready for ``from_pretrained`` or ``vllm serve``.

The folder holds safetensors weights, the tokenizer with its chat template, a greedy generation
config, ``aims_kit.json`` (the output format, the instruction to send and the parse rule) and a
model card (``README.md``) whose metrics and intervals come from the run's own records.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

from aims_kit.core import results
from aims_kit.core.results import share_like_umask
from aims_kit.datasets import formats
from aims_kit.evaluation.runs import answer_budget
from aims_kit.inference.generation import LABEL_STOPS

#: Record columns the model card's table shows, in order.
CARD_COLUMNS = ("n", "f1", "precision", "recall", "parse_failure_rate", "ms_per_prompt", "tokens_per_prompt")


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Merge the run's adapter into its base model and write the standalone folder ``out_dir``.

    The base loads in full precision (merging into 4-bit weights would round the adapter away),
    the adapter is checked to be in effect, and the folder appears in one rename: a failed export
    leaves nothing half-written. An existing non-empty ``out_dir`` is refused, never overwritten.
    """
    from aims_kit.models.loading import load_trained

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir}: exists and is not empty; export into a new folder")
    config = results.read_run_config(run_dir)
    if not (run_dir / "adapter" / "adapter_config.json").exists():
        hint = " (its encoder/ folder already is a standalone model)" if config.get("regime") == "encoder" else ""
        raise ValueError(f"{run_dir}: export merges a LoRA adapter, and this {config.get('regime')} run has none{hint}")
    model, tokenizer = load_trained(run_dir, quantize=False)
    merged = model.merge_and_unload()
    generation = merged.generation_config
    generation.do_sample = False
    generation.max_new_tokens = answer_budget(config)
    generation.pad_token_id = tokenizer.pad_token_id
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        merged.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        results.atomic_write_json(staging / "aims_kit.json", usage(config))
        records = [results.read_json(p) for p in sorted((run_dir / "results").glob("*.json"))]
        results.atomic_write_text(staging / "README.md", model_card(config, records, out_dir.name))
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        share_like_umask(staging)  # mkdtemp made it 0700
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def export_for_serving(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """The run's exported folder for ``serve``: ``out_dir`` (default ``RUN/export``), exported unless it already holds this run.

    An earlier export of the same run (its ``aims_kit.json`` names the run id) is reused, so
    serving a run twice does not merge and write the weights twice; any other non-empty folder
    is refused by :func:`export_run`.
    """
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    marker = out_dir / "aims_kit.json"
    if marker.is_file() and results.read_json(marker).get("run_id") == results.read_run_config(run_dir).get("run_id"):
        return out_dir
    return export_run(run_dir, out_dir)


def usage(config: dict) -> dict:
    """How to ask the exported model and read its answer (``aims_kit.json``)."""
    condition = config["condition"]
    return {
        "condition": condition,
        "system_prompt": formats.instruction(condition),
        "stop_after": [] if condition == "label_only" else list(LABEL_STOPS),
        "max_new_tokens": answer_budget(config),
        "parse_failure_rule": formats.PARSE_FAILURE_RULE,
        "run_id": config.get("run_id"),
        "base_model": config.get("model"),
    }


def _metrics_table(records: list[dict]) -> str:
    if not records:
        return "The run holds no evaluation records yet: evaluate it before trusting this model.\n"
    head = "| dataset | n | F1 [95% CI] | precision | recall | parse failures | ms/prompt | tokens/prompt | device |\n"
    head += "|---|---|---|---|---|---|---|---|---|\n"
    rows = []
    for r in records:
        ci = f" [{r['f1_ci_low']:.3f}, {r['f1_ci_high']:.3f}]" if r.get("f1_ci_low") is not None else ""
        rows.append(
            f"| {r['dataset']} | {r['n']} | {r['f1']:.3f}{ci} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['parse_failure_rate']:.1%} | {r['ms_per_prompt']:.1f} | {r['tokens_per_prompt']:.1f} | {r.get('device', '')} |"
        )
    baselines = ", ".join(f"{r['dataset']} {r['f1_flag_all']:.3f}" for r in records if "f1_flag_all" in r)
    note = f"\nFlag-everything baseline F1 (harmful = positive): {baselines}.\n" if baselines else "\n"
    return head + "\n".join(rows) + "\n" + note


def model_card(config: dict, records: list[dict], name: str) -> str:
    """The model card: what it is, what it was trained on, how well it did (with intervals), how to use it, its limits."""
    condition = config["condition"]
    train = config.get("train", {})
    lora = train.get("lora", {})
    example = formats.format_target(condition, "safe", intent="The user wants to stop a frozen program.", reasoning="…")
    return f"""---
base_model: {config.get('model')}
library_name: transformers
pipeline_tag: text-generation
tags: [safety, guard, aims-kit, lora-merged]
---

# {name}

An intent-aware prompt-safety classifier exported by AIMS Kit from run `{config.get('run_id')}`:
the base model `{config.get('model')}` with its LoRA adapter (r={lora.get('r', '?')}, alpha={lora.get('alpha', '?')})
merged into the weights. It labels a **user prompt** as `harmful` or `safe`.

## Training

- regime: {config.get('regime')}, output format: `{condition}`{f", variant: {config.get('variant')}" if config.get('variant') else ''}
- data: {config.get('data_source') or 'not recorded'} (train split for training, validation split for early stopping and checkpoint choice; the test split never chose anything)
- seed {config.get('seed')}; training settings: {', '.join(f'{k} {v}' for k, v in train.items() if k != 'lora') or 'not recorded'}
- processes: {config.get('world_size', 1)}; kit commit `{config.get('git_commit')}`

## Evaluation (from the run's records)

{_metrics_table(records)}
F1 is the harmful class's, with percentile-bootstrap 95% intervals. ms/prompt is batched
throughput (the whole set ÷ prompts) on the device shown.

## How to ask it, and how to read the answer

Send the system instruction below, then the prompt as the user turn, and decode greedily
(`aims_kit.json` holds the same facts for programs):

```text
{formats.instruction(condition)}
```

It answers like `{example}`. Parse rule: strip any `<think>…</think>` block, take the last
labelled field (`Harm:` / `Prompt harm:`), or a bare one-word answer; unsafe → harmful,
unharmful / benign → safe; never substring-match ("harmful" is inside "unharmful").
An answer the parser cannot read counts as **{formats.PARSE_FAILURE_RULE}**; report the
parse-failure rate beside F1.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{name}")
tokenizer = AutoTokenizer.from_pretrained("{name}")
```

Served: `python -m aims_kit serve --export {name}` (transformers serve, CPU or GPU) or
`vllm serve {name}`, then `python -m aims_kit eval --endpoint http://localhost:8000/v1
--served-model {name} --condition {condition} --benchmark xstest` (see `docs/serving.md` in AIMS Kit).

## Intended use and limits

- For screening user prompts before a model answers them, with a person or a stricter policy
  behind a `harmful` verdict. It does not judge model responses, and it is not a content policy.
- Its notion of harm is the training data's; annotators themselves agree on binary harm only
  moderately, so expect disagreement on borderline prompts.
- English prompts; numbers above hold for the datasets listed and the shown intervals, nowhere else.
- A model trained on a small sample or for a few steps (the kit's CPU profiles) demonstrates the
  pipeline and is not a usable guard.

Exported {dt.date.today().isoformat()}.
"""
