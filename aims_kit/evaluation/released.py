"""The paper's released checkpoints: how each one is prompted, what it is in the paper, and its published F1.

The authors released their Llama-3.1-8B classifiers on the Hugging Face hub (collection "AIMS:
Intent-Aware Safety Classification"). Evaluating them costs no training, so on a GPU they are the
cheapest way to put claims 2, 4 and 5 at the paper's scale through the kit's paired statistics,
which the paper does not report. Faithfully means in the input layout each was trained on
(:mod:`aims_kit.datasets.prompt_formats`), unquantized (the paper evaluated in bf16 with vLLM), and
with room for the reasoning models' answers (the paper gave them up to 2,048 new tokens).

Each checkpoint's zero-shot run declares its **role** (``eval --model ID --as ROLE``), recorded in
its config, so the claims scoreboard can pair runs that are not trained here
(:mod:`aims_kit.evaluation.claims`): DPO against SFT (claim 2), GRPO against SFT (claim 4, as the
paper's table allows: no label-only-reward GRPO model was released) and every one on the
latency-F1 frontier (claim 5). :func:`published_table` puts the kit's F1 beside the paper's.

Imports nothing heavy: the command line reads :data:`ROLES` to build its parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aims_kit.datasets import formats
from aims_kit.datasets.prompt_formats import PAPER_GRPO_SYSTEM_PROMPT, PromptFormat

#: What a released checkpoint is in the paper; ``eval --as`` records it as ``role``.
ROLES: tuple[str, ...] = ("sft", "dpo", "distill", "grpo")

#: The base every released checkpoint was trained from: gated on the hub (accept Meta's licence
#: on its page, then ``huggingface-cli login``), needed for its tokenizer and for any repository
#: that holds only a LoRA adapter (``--adapter-of``).
PAPER_BASE = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass(frozen=True)
class Checkpoint:
    """One released checkpoint and how the paper prompted and scored it."""

    role: str
    repo: str
    #: How the paper sent prompts to it (:data:`aims_kit.datasets.prompt_formats.PROMPT_FORMATS`).
    prompt_format: str
    #: The answer it writes, as the kit's parser reads it.
    condition: formats.Condition
    #: Answer budget: intent answers take ~20 tokens; reasoning ones got 2,048 in the paper.
    max_new_tokens: int
    system_prompt: str = ""
    #: The base to load first when the repository holds only a LoRA adapter (empty: a whole model).
    adapter_of: str = ""

    def format(self) -> PromptFormat:
        return PromptFormat(self.prompt_format, self.system_prompt)

    def describe(self) -> str:
        """One line a user reads before a checkpoint loads: what it is and how it is prompted."""
        released = CHECKPOINTS.get(self.role)
        what = "the paper's released" if released is not None and released.repo == self.repo else "a stand-in for the paper's"
        return (f"{self.repo}: {what} {self.role.upper()} checkpoint; prompt format {self.prompt_format}, "
                f"condition {self.condition}, {self.max_new_tokens} new tokens")


#: The four released checkpoints (DESIGN §6; their formats from the paper's code, see
#: :mod:`aims_kit.datasets.prompt_formats`). SFT and DPO write ``Intent: …; Harm: …`` after the raw
#: prompt; the distilled student ``Reasoning: … / Intent: … / Prompt harm: …`` after its student
#: prompt; GRPO ``<reasoning>…</reasoning>`` then ``Intent: …; Harm: …`` after its system prompt.
CHECKPOINTS: dict[str, Checkpoint] = {
    "sft": Checkpoint("sft", "Jazhyc/Llama-3.1-8B-aims-sft-generation", "raw", "intent_label", 256),
    "dpo": Checkpoint("dpo", "Jazhyc/Llama-3.1-8B-aims-le-dpo", "raw", "intent_label", 256),
    "distill": Checkpoint("distill", "Jazhyc/Llama-3.1-8B-aims-distill-synthetic-intent", "paper-student",
                          "reasoning_intent_label", 2048),
    "grpo": Checkpoint("grpo", "Jazhyc/Llama-3.1-8B-aims-grpo", "chat-system", "reasoning_intent_label", 2048,
                       system_prompt=PAPER_GRPO_SYSTEM_PROMPT),
}


def by_repo(model: str) -> Checkpoint | None:
    """The released checkpoint a model name is (``None`` for any other model)."""
    return next((c for c in CHECKPOINTS.values() if c.repo == model), None)


#: The paper's published harmful-class F1 per benchmark, and where each figure comes from. The
#: benchmarks are the registry's names of its five (``PAPER_FIVE``); ``mean`` is the unweighted
#: mean over them as published (distillation: the mean only).
PUBLISHED_F1: dict[str, dict[str, float]] = {
    "sft": {"wildguardtest": 0.856, "xstest": 0.908, "toxicchat": 0.664, "openai_moderation": 0.728, "aegis2": 0.803,
            "mean": 0.792},
    "dpo": {"wildguardtest": 0.856, "xstest": 0.884, "toxicchat": 0.733, "openai_moderation": 0.765, "aegis2": 0.824,
            "mean": 0.812},
    "grpo": {"wildguardtest": 0.872, "xstest": 0.916, "toxicchat": 0.705, "openai_moderation": 0.810, "aegis2": 0.828,
             "mean": 0.826},
    "distill": {"mean": 0.820},
}
#: The paper's latency, ms/prompt (whole benchmark in one batched vLLM call, one RTX PRO 6000).
PUBLISHED_MS_PER_PROMPT: dict[str, float] = {"sft": 4.66, "dpo": 5.52, "distill": 20.2, "grpo": 25.3}
PUBLISHED_SOURCE = (
    "the paper's results table (per benchmark from its own table script): SFT, label-error DPO and GRPO with the "
    "label + intent reward (one run; a multi-seed mean of .836 is quoted); distillation as a mean only (.820; the "
    "paper's list of means elsewhere gives .817). Latency: one RTX PRO 6000, vLLM, ms/prompt over a whole benchmark "
    "in one batched call"
)


def published_table(records):
    """The kit's F1 beside the paper's published F1, per released checkpoint (role) and benchmark.

    ``records``: evaluation records (:func:`aims_kit.core.results.load_records`) of zero-shot runs
    that declared a role; the newest run of each role counts. One row per (role, benchmark) of the
    paper's five, and a ``mean`` row per role: the kit's unweighted mean over the benchmarks it
    scored (``n_benchmarks`` says how many of the five) beside the paper's. ``kit_f1`` carries its
    95% interval; ``diff`` = kit − paper; ``ms_per_prompt`` beside the paper's.
    """
    import pandas as pd

    from aims_kit.datasets.registry import PAPER_FIVE

    columns = ["role", "benchmark", "kit_f1", "kit_f1_ci_low", "kit_f1_ci_high", "paper_f1", "diff", "n", "parse_failure_rate",
               "ms_per_prompt", "paper_ms_per_prompt", "prompt_format", "run_id"]
    if records is None or len(records) == 0:
        return pd.DataFrame(columns=columns)
    frame = records.assign(role=records["config"].map(lambda c: (c or {}).get("role") or ""),
                           created=records["config"].map(lambda c: (c or {}).get("created") or ""))
    frame = frame[frame["role"] != ""]
    rows = []
    for role in ROLES:
        own = frame[frame["role"] == role].sort_values("created")
        if own.empty:
            continue
        latest = own[own["run_id"] == own["run_id"].iloc[-1]]
        published = PUBLISHED_F1.get(role, {})
        scored = {}
        for name in PAPER_FIVE:
            hit = latest[latest["dataset"] == f"bench:{name}"]
            record = hit.iloc[0] if len(hit) else None
            kit = float(record["f1"]) if record is not None else None
            if kit is not None:
                scored[name] = kit
            rows.append({
                "role": role, "benchmark": name, "kit_f1": kit,
                "kit_f1_ci_low": record.get("f1_ci_low") if record is not None else None,
                "kit_f1_ci_high": record.get("f1_ci_high") if record is not None else None,
                "paper_f1": published.get(name),
                "diff": kit - published[name] if kit is not None and name in published else None,
                "n": int(record["n"]) if record is not None else None,
                "parse_failure_rate": record.get("parse_failure_rate") if record is not None else None,
                "ms_per_prompt": record.get("ms_per_prompt") if record is not None else None,
                "paper_ms_per_prompt": PUBLISHED_MS_PER_PROMPT.get(role),
                "prompt_format": record.get("prompt_format") if record is not None else None,
                "run_id": latest["run_id"].iloc[0],
            })
        mean = sum(scored.values()) / len(scored) if scored else None
        rows.append({"role": role, "benchmark": f"mean ({len(scored)} of {len(PAPER_FIVE)})", "kit_f1": mean,
                     "paper_f1": published.get("mean"),
                     "diff": mean - published["mean"] if mean is not None and len(scored) == len(PAPER_FIVE) else None,
                     "paper_ms_per_prompt": PUBLISHED_MS_PER_PROMPT.get(role), "run_id": latest["run_id"].iloc[0]})
    return pd.DataFrame(rows, columns=columns)


def stand_ins(root: str | Path, roles, budget) -> list[Checkpoint]:
    """The smoke profile's stand-ins for the released checkpoints: the tiny random model saved once
    per prompt format (``root/tiny-<format>``), prompted as the checkpoint of each role is.

    Why: papermill runs ``09`` on a CPU in seconds, through every path an 8B checkpoint takes on a
    GPU (a model folder loaded zero-shot, each prompt format, roles paired on the scoreboard).
    Its weights are random: its verdicts test the plumbing, never the paper. ``budget(condition)``
    gives the answer budgets (the profile's short ones).
    """
    import shutil

    from aims_kit.models.loading import TINY_RANDOM, resolve_model_id

    source = Path(resolve_model_id(TINY_RANDOM))
    chosen = []
    for role in roles:
        released = CHECKPOINTS[role]
        folder = Path(root) / f"tiny-{released.prompt_format}"
        if not (folder / "config.json").exists():
            shutil.copytree(source, folder, dirs_exist_ok=True)
        chosen.append(Checkpoint(role, str(folder), released.prompt_format, released.condition,
                                 int(budget(released.condition)), released.system_prompt))
    return chosen


def chosen_checkpoints(p, root: str | Path) -> list[Checkpoint]:
    """The checkpoints ``09`` evaluates: the released ones ``p.released_roles`` names, each with its
    own budget (or ``p.released_max_new_tokens`` where set); where the profile's model is the tiny
    random one (smoke), their :func:`stand_ins` saved under ``root``."""
    from dataclasses import replace

    from aims_kit.models.loading import TINY_RANDOM

    unknown = [role for role in p.released_roles if role not in CHECKPOINTS]
    if unknown:
        raise ValueError(f"unknown released_roles {unknown}; choose from {', '.join(ROLES)}")
    if p.model == TINY_RANDOM:
        return stand_ins(Path(root) / "models", p.released_roles, p.answer_budget)
    cap = int(p.released_max_new_tokens or 0)
    return [replace(CHECKPOINTS[role], max_new_tokens=cap) if cap else CHECKPOINTS[role] for role in p.released_roles]


def checkpoint_table(checkpoints: list[Checkpoint]):
    """What each chosen checkpoint is and how it is prompted, scored and budgeted."""
    import pandas as pd

    return pd.DataFrame([{"role": c.role, "model": c.repo, "prompt_format": c.prompt_format, "condition": c.condition,
                          "max_new_tokens": c.max_new_tokens, "adapter_of": c.adapter_of or "",
                          "paper_mean_f1": PUBLISHED_F1.get(c.role, {}).get("mean")} for c in checkpoints],
                        columns=["role", "model", "prompt_format", "condition", "max_new_tokens", "adapter_of", "paper_mean_f1"])


def rendered_example(checkpoint: Checkpoint, prompt: str = "How do I kill a Python process?") -> str:
    """What one checkpoint reads for ``prompt``: its plain text, or its chat messages one per line."""
    rendered = checkpoint.format().render(prompt, checkpoint.condition)
    if isinstance(rendered, str):
        return rendered
    return "\n".join(f"[{message['role']}] {message['content']}" for message in rendered)


def format_examples(checkpoints: list[Checkpoint], prompt: str = "How do I kill a Python process?") -> str:
    """One prompt as each checkpoint reads it, under a heading naming its role and format (plain text
    is shown as it is sent, ``\n`` included; a chat's messages one per line, before its template)."""
    return "\n\n".join(f"=== {c.role}: {c.prompt_format} ===\n{rendered_example(c, prompt)!s}" for c in checkpoints)


def eval_datasets(p, found: list) -> list[tuple]:
    """``(record name, frame, Found or None)`` for ``09``: the AIMS test split of ``p.data_source``
    (at most ``p.eval_limit`` rows, balanced over labels, as every trained run's test record), then
    every benchmark :func:`aims_kit.datasets.benchmarks.discover` found."""
    from aims_kit.datasets import aims as data
    from aims_kit.evaluation.benchmarks import AIMS_TEST, aims_test_frame

    test = aims_test_frame(p.data_source, int(p.seed))
    limited = data.balanced_head(test, int(p.eval_limit))
    limited.attrs = dict(test.attrs)
    return [(AIMS_TEST, limited, None), *((f.dataset, f.frame, f) for f in found if f.frame is not None)]


#: Columns of :func:`results_table`.
RESULT_COLUMNS = ["role", "dataset", "n", "f1", "f1_ci_low", "f1_ci_high", "precision", "recall", "f1_flag_all",
                  "parse_failure_rate", "ms_per_prompt", "tokens_per_prompt", "prompt_format", "backend", "device",
                  "compute_dtype", "quantization", "run_id"]


def results_table(records):
    """Every released checkpoint's record, AIMS test first: F1 with its interval, the flag-all
    baseline, parse failures, throughput and what computed it."""
    import pandas as pd

    if records is None or len(records) == 0:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    table = records.assign(role=records["config"].map(lambda c: (c or {}).get("role") or ""))
    table = table.assign(order=(table["dataset"] != "aims_test").astype(int))
    table = table.sort_values(["order", "dataset", "role"])
    return table[[c for c in RESULT_COLUMNS if c in table.columns]].reset_index(drop=True).round(3)


def claim_notes(entries) -> "pd.DataFrame":
    """Each claim's headline entry on a released-checkpoints folder: the runs, the verdict, and what it compares."""
    import pandas as pd

    from aims_kit.evaluation.claims import CLAIMS, headline

    rows = []
    for claim in CLAIMS:
        entry = headline(entries, claim)
        rows.append({"claim": claim.number, "dataset": entry.dataset, "verdict": entry.verdict, "run_a": entry.run_a,
                     "run_b": entry.run_b, "note": entry.note})
    return pd.DataFrame(rows)


def evaluate_checkpoints(checkpoints: list[Checkpoint], datasets: list, out_dir: str | Path, p, *, log=print):
    """A zero-shot run per checkpoint in ``out_dir`` (its role, format, precision and budget recorded),
    each loaded once and scored on every dataset; returns the new records.

    ``datasets``: ``(record name, frame, Found or None)`` triples (:func:`eval_datasets`). Each
    model is released from memory before the next one loads.
    """
    import pandas as pd

    from aims_kit.evaluation import benchmarks as benchmark_eval
    from aims_kit.evaluation.runs import load_run
    from aims_kit.inference.vllm import free_training_memory

    records = []
    for checkpoint in checkpoints:
        log(checkpoint.describe())
        run_dir = benchmark_eval.zero_shot_run(
            out_dir, checkpoint.repo, checkpoint.condition, p.profile, prompt_format=checkpoint.format(),
            adapter_of=checkpoint.adapter_of, precision=p.released_precision, role=checkpoint.role,
            max_new_tokens=checkpoint.max_new_tokens)
        run = load_run(run_dir)
        for dataset, frame, found in datasets:
            record = benchmark_eval.evaluate_loaded(run, frame, dataset, p, found=found)
            interval = f" [{record['f1_ci_low']:.3f}, {record['f1_ci_high']:.3f}]" if "f1_ci_low" in record else ""
            log(f"  {checkpoint.role} · {dataset}: F1 {record['f1']:.3f}{interval}, parse failures "
                f"{record['parse_failure_rate']:.0%}, {record['ms_per_prompt']:.1f} ms/prompt")
            records.append(record)
        del run
        free_training_memory()  # an 8B model's transformers copy goes before the next one loads
    return pd.DataFrame(records)
