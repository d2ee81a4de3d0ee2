"""Evaluate runs on external benchmarks: one tidy record per (run, benchmark), with intervals.

The glue the ``06_benchmarks`` notebook and ``python -m aims_kit eval`` share. Any run kind is
accepted — a trained adapter (SFT, DPO, distillation, GRPO), a zero-shot model, the encoder
baseline — and each is loaded once and scored on every benchmark frame through the same metric,
bootstrap and latency code, so their records sit in one table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aims_kit.core import results
from aims_kit.core.params import BenchmarkParams, RunParams
from aims_kit.datasets import aims as data
from aims_kit.datasets import benchmarks
from aims_kit.datasets.benchmarks import Found
from aims_kit.datasets.prompt_formats import PromptFormat
from aims_kit.evaluation.runs import LoadedRun, answer_budget, load_run
from aims_kit.scoring import evaluate as evaluation
from aims_kit.scoring import stats

#: Columns of the benchmark table: point estimates, intervals, baselines, both latencies.
TABLE_COLUMNS = [
    "dataset", "regime", "condition", "variant", "seed", "n", "f1", "f1_ci_low", "f1_ci_high", "precision", "recall",
    "f1_flag_all", "parse_failure_rate", "ms_per_prompt", "latency_p50_ms", "latency_p95_ms", "tokens_per_prompt",
    "n_unknown_skipped", "device", "run_id",
]


def zero_shot_run(out_dir: str | Path, model: str, condition: str, profile: str = "custom", *,
                  prompt_format: PromptFormat | None = None, adapter_of: str = "", precision: str = "auto", role: str = "",
                  max_new_tokens: int | None = None) -> Path:
    """A new run folder for an untrained model, or a released checkpoint, asked for ``condition``'s answer.

    What it records is what every later use of the run loads and prompts with
    (:func:`aims_kit.evaluation.runs.load_run`, :class:`aims_kit.Classifier`):

    - ``prompt_format``: how prompts reach the model (default: the kit's chat + instruction;
      :mod:`aims_kit.datasets.prompt_formats`), with its system prompt for ``chat-system``;
    - ``adapter_of``: for a repository holding only a LoRA adapter, the base loaded first;
    - ``precision``: ``auto`` (unquantized, in the device policy's dtype), ``bf16``, ``fp16``,
      ``fp32`` or ``4bit`` (:func:`aims_kit.models.precision.load_precision`);
    - ``role``: what the checkpoint is in the paper (:data:`aims_kit.evaluation.released.ROLES`),
      so the claims scoreboard can pair released checkpoints; it is the run's ``variant`` too;
    - ``max_new_tokens``: the answer budget (default: the condition's, from the profile's defaults).
    """
    from aims_kit.core.params import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return _untrained_run(out_dir, "zero_shot", condition, model, profile, prompt_format, role, max_new_tokens,
                          {"precision": precision, **({"adapter_of": adapter_of} if adapter_of else {})})


def served_run(out_dir: str | Path, endpoint: str, model: str, condition: str, profile: str = "custom", *,
               prompt_format: PromptFormat | None = None, role: str = "", max_new_tokens: int | None = None) -> Path:
    """A new run folder for a model served at ``endpoint`` (OpenAI-compatible), prompted with ``condition``.

    Evaluating it goes through the same records as a local run; ``model`` is the name the server
    serves it under (vLLM: the folder given to ``vllm serve``, ``--served-model-name`` or a LoRA module).
    ``prompt_format`` and ``role`` are recorded as :func:`zero_shot_run` records them; a plain-text
    format is sent to the server's ``/completions`` route.
    """
    return _untrained_run(out_dir, "served", condition, model, profile, prompt_format, role, max_new_tokens, {"endpoint": endpoint})


def _untrained_run(out_dir: str | Path, regime: str, condition: str, model: str, profile: str, prompt_format: PromptFormat | None,
                   role: str, max_new_tokens: int | None, extra: dict) -> Path:
    """The run folder of a model the kit did not train (``zero_shot`` or ``served``): the condition,
    role and prompt format checked once, the config both regimes record, plus ``extra``."""
    from aims_kit.datasets.formats import CONDITIONS
    from aims_kit.evaluation.released import ROLES

    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    if role and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    prompt_format = prompt_format or PromptFormat()
    prompt_format.check(condition)
    config = {"regime": regime, "condition": condition, "model": model, "profile": profile, "seed": None,
              **prompt_format.to_config(), **extra, **({"role": role, "variant": role} if role else {})}
    config["max_new_tokens"] = int(max_new_tokens) if max_new_tokens else answer_budget(config)
    return results.create_run(Path(out_dir), f"{regime}-{role or condition}", config)


def evaluate_loaded(run: LoadedRun, frame: pd.DataFrame, dataset: str, p: BenchmarkParams, *, found: Found | None = None) -> dict:
    """Score one loaded run on one benchmark frame and write the record (with bootstrap CIs).

    The answer budget is the run's own (:attr:`LoadedRun.max_new_tokens`), the one its test
    split was scored with.

    Slice columns of the frame (``type``, ``Adversarial``, ``Category``) are copied into the
    saved predictions, so per-slice F1 can be computed from the files alone.
    """
    limit = int(p.benchmark_limits.get(frame.attrs.get("benchmark", dataset), p.benchmark_limit) or 0)
    frame = data.stratified_sample(frame, limit, seed=int(p.seed or 0))
    latency_sample = int(p.latency_sample if p.benchmark_latency_sample is None else p.benchmark_latency_sample)
    scores, predictions = score_loaded(run, frame, dataset, p, latency_sample=latency_sample, n_boot=int(p.n_boot))
    slices = [c for c in ("type", "Adversarial", "Category") if c in frame.columns]
    for prediction, values in zip(predictions, frame[slices].to_dict("records")):
        prediction.update(values)
    extra = {
        "benchmark": frame.attrs.get("benchmark", dataset),
        "benchmark_kind": found.kind if found else "local",
        "benchmark_source": found.source if found else frame.attrs.get("source", ""),
        "n_unknown_skipped": int(frame.attrs.get("n_unknown", 0)),
        "benchmark_rows": int(frame.attrs.get("n_raw", len(frame))),
        "benchmark_limit": limit,
        "variant": run.config.get("variant", ""),
    }
    return results.write_record(run.run_dir, dataset, {**scores, **extra}, predictions)


def score_loaded(run: LoadedRun, frame: pd.DataFrame, dataset: str, p: RunParams, *, latency_sample: int,
                 n_boot: int) -> tuple[dict, list[dict]]:
    """Classify ``frame`` with a loaded run, as its test split was scored: the encoder's head, or the
    run's condition, answer budget, prompt format and backend. Writes nothing (the caller decides)."""
    batch_size = int(p.eval_batch_size)
    if run.is_encoder:
        from aims_kit.training.encoder import evaluate_encoder

        return evaluate_encoder(run.model, run.tokenizer, frame, dataset=dataset, batch_size=batch_size,
                                latency_sample=latency_sample, n_boot=n_boot)
    from aims_kit.inference import vllm as vllm_backend

    condition = run.config["condition"]
    budget = run.max_new_tokens
    # The backend the run's test split was scored with (same ``backend`` rule, same shared engine).
    engine = run.engine if run.engine is not None else vllm_backend.engine_for_run(run.run_dir, run.model, run.tokenizer, frame["Prompt"], condition, budget, p)
    return evaluation.evaluate(
        run.model, run.tokenizer, frame, condition=condition, dataset=dataset, batch_size=batch_size,
        max_new_tokens=budget, latency_sample=latency_sample, n_boot=n_boot, engine=engine,
        prompt_format=PromptFormat.from_config(run.config),
    )


def evaluate_runs(run_dirs: list[Path], found: list[Found], p: BenchmarkParams, *, log=print) -> pd.DataFrame:
    """Every run on every found benchmark (each model loaded once); returns the new records."""
    records = []
    usable = [f for f in found if f.frame is not None]
    for run_dir in run_dirs:
        run = load_run(run_dir)
        for item in usable:
            record = evaluate_loaded(run, item.frame, item.dataset, p, found=item)
            log(f"{run.run_dir.name} · {item.dataset}: F1 {record['f1']:.3f} "
                f"[{record['f1_ci_low']:.3f}, {record['f1_ci_high']:.3f}]")
            records.append(record)
    return pd.DataFrame(records)


def evaluated_runs(out_dir: str | Path) -> list[Path]:
    """Run folders in ``out_dir`` with something to evaluate: a trained adapter, an encoder, or zero-shot."""
    return [
        run for run in results.find_runs(out_dir)
        if (run / "adapter" / "adapter_config.json").exists() or (run / "encoder" / "config.json").exists()
        or results.read_run_config(run).get("regime") == "zero_shot"
    ]


def benchmark_table(records: pd.DataFrame) -> pd.DataFrame:
    """Benchmark records with their intervals, baselines and both latencies, fixtures marked."""
    if records.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    from aims_kit.notebook.report import tokens_shown

    subset = records[records["dataset"].str.startswith(("bench:", "fixture:"))].sort_values(["dataset", "regime", "condition"])
    subset = subset.reset_index(drop=True)
    columns = [c for c in TABLE_COLUMNS if c in subset.columns]
    table = subset[columns].round(3)
    table.insert(1, "what", table["dataset"].map(lambda d: "fixture (not a real benchmark)" if d.startswith("fixture:") else "benchmark"))
    if "tokens_per_prompt" in table:  # "scored (no decoding)", not 0.000 (docs/glossary.md, Columns)
        table["tokens_per_prompt"] = [tokens_shown(row) for _, row in subset.iterrows()]
    return table


def paired_table(out_dir: str | Path, a: dict, b: dict, datasets: list[str], *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired comparison of the latest run matching ``a`` against the latest matching ``b`` per dataset."""
    run_a, run_b = results.latest_run(out_dir, **a), results.latest_run(out_dir, **b)
    rows = [
        stats.compare_runs(run_a, run_b, dataset, n_boot=n_boot, seed=seed)
        for dataset in datasets
        if (run_a / "predictions" / f"{dataset}.jsonl").exists() and (run_b / "predictions" / f"{dataset}.jsonl").exists()
    ]
    return pd.DataFrame(rows).round(4)


def run_predictions(run_dir: str | Path, dataset: str) -> pd.DataFrame:
    """A run's saved predictions on ``dataset`` with their slice columns."""
    return pd.DataFrame(results.read_jsonl(Path(run_dir) / "predictions" / f"{dataset}.jsonl"))


#: The AIMS test split as an ``eval`` dataset: scored like a benchmark, under the name every notebook's records use.
AIMS_TEST = "aims_test"


def aims_test_frame(data_source: str = "", seed: int = 22) -> pd.DataFrame:
    """The AIMS test split of ``data_source`` as ``eval`` scores it (the shipped sample when empty).

    A source with its own splits (the hub's ``Jazhyc/aims-safety-intents``) keeps its published
    test split, the paper's; a single file is split with the paper's policy and ``seed``.
    """
    frame = data.split_aims(data.load_aims(data_source or None), seed=seed).test.copy()
    frame.attrs = {"benchmark": AIMS_TEST, "source": data_source or "aims-kit sample", "n_raw": len(frame)}
    return frame


def eval_frames(names: list[str], path: str | Path | None = None, *, data_source: str = "", seed: int = 22) -> list[tuple[str, pd.DataFrame]]:
    """``(record name, frame)`` for each dataset ``eval`` was asked for, all loaded before any model is.

    A registry name reads ``path`` (only with a single name), else a file in the benchmark folders
    or shipped with the kit, else the hub; :data:`AIMS_TEST` is the AIMS test split of
    ``data_source``. A name given twice is scored once. Raises :class:`aims_kit.datasets.benchmarks.BenchmarkError`
    or ``KeyError`` (an unknown name) with a message a user can act on.
    """
    names = list(dict.fromkeys(names))
    if path is not None and (len(names) != 1 or names[0] == AIMS_TEST):
        raise benchmarks.BenchmarkError(str(path), "--path names the file of one benchmark: give a single registry --benchmark with it")
    frames = []
    for name in names:
        if name == AIMS_TEST:
            frames.append((AIMS_TEST, aims_test_frame(data_source, seed)))
            continue
        where = path or benchmarks.find_local(name, benchmarks.search_dirs())
        frames.append((dataset_name(name, where), benchmarks.load_benchmark(name, where)))
    return frames


def dataset_name(name: str, path: str | Path | None) -> str:
    """Record name for the CLI: ``fixture:<name>`` for the kit's own fixture files, else ``bench:<name>``."""
    if path is not None and Path(path).resolve().parent == benchmarks.FIXTURES_DIR.resolve():
        return f"fixture:{name}"
    return f"bench:{name}"


def sft_comparison(out_dir: str | Path, records: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame | str:
    """Paired intent → label vs label-only SFT on every dataset both were evaluated on."""
    if not all(results.find_runs(out_dir, regime="sft", condition=c) for c in ("intent_label", "label_only")):
        return "train both SFT conditions (02_sft) to compare them"
    datasets = sorted(set(records["dataset"]) - {"aims_test"}) + ["aims_test"]
    return paired_table(out_dir, {"regime": "sft", "condition": "intent_label"}, {"regime": "sft", "condition": "label_only"},
                        datasets, n_boot=n_boot, seed=seed)


#: Fewest prompts a slice needs for a row of its own: below it a slice's F1 interval spans most of 0–1
#: (a 10-prompt slice's accuracy moves 0.1 per prompt), so 06 once showed 162 rows of noise.
MIN_SLICE_PROMPTS = 20


def slice_table(run_dirs: list[Path], found: list[Found], benchmark: str = "xstest", column: str = "type",
                min_prompts: int = MIN_SLICE_PROMPTS) -> pd.DataFrame | str:
    """Per-slice F1 of every run on one benchmark (XSTest's prompt types by default), slices of at
    least ``min_prompts`` prompts only.

    The slices left out are counted in ``table.attrs["left_out"]`` (slices, prompts, the floor) for
    the one line :func:`aims_kit.notebook.prose.slices_left_out` writes under the table.
    """
    dataset = next((f.dataset for f in found if f.name == benchmark and f.frame is not None), None)
    slices = {
        run.name: stats.slice_f1(run_predictions(run, dataset), column)
        for run in run_dirs if dataset and (run / "predictions" / f"{dataset}.jsonl").exists()
    }
    if not slices:
        return f"{benchmark} was not evaluated"
    table = pd.concat(slices, names=["run"]).round(3)
    small = table[table["n"] < min_prompts].drop_duplicates(column)
    kept = table[table["n"] >= min_prompts]
    kept.attrs["left_out"] = {"benchmark": benchmark, "column": column, "slices": len(small),
                              "prompts": int(small["n"].sum()), "min_prompts": min_prompts, "kept": int(kept[column].nunique())}
    return kept


def seed_table(records: pd.DataFrame) -> pd.DataFrame | None:
    """Mean ± std of F1 over seeds per benchmark, for the experiments that have more than one seed (06).

    ``None`` when none has: a spread over one seed is 0 by construction, and an 18-row table of
    "± 0.000" says nothing (:func:`aims_kit.notebook.prose.latency_and_seeds` says so in words).
    """
    bench = records[records["dataset"].str.startswith(("bench:", "fixture:"))] if not records.empty else records
    table = stats.aggregate_seeds(bench)
    several = table[table["n_seeds"] > 1].reset_index(drop=True)
    return several if len(several) else None


def benchmark_datasets(records: pd.DataFrame) -> list[str]:
    """The external benchmark (and fixture) datasets among the records."""
    return sorted(d for d in records["dataset"].unique() if d.startswith(("bench:", "fixture:")))
