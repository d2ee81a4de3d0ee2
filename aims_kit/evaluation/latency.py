"""Claim 5's latencies from one controlled measurement, not from each run's own evaluation.

A run's ``ms_per_prompt`` record is taken once, when that run happened to be evaluated: another
moment, another load on the cores, sometimes another notebook. Two runs with nearly the same
answers can then differ by 1.7× (observed on OpenAI Moderation), which decides who is "at least as
fast" on the frontier. Here every evaluated run of a folder is timed in one process, on the same
prompts (a seeded sample of the prompts every run was scored on, per dataset), by the same method
(batched throughput, each run's own answer budget, backend and prompt format), ``repeats`` times
after one warm-up pass per run; the median decides, the spread is shown.

Reading a measurement (:func:`read`, :func:`table`) loads no model library: the scoreboard and
the report read it; only taking one (:func:`measure`) imports the evaluation stack.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd

from aims_kit.core import results
from aims_kit.core.params import RunParams
from aims_kit.datasets import aims as data

#: Written into the run folder; :func:`aims_kit.evaluation.claims.write_claims` reads it.
LATENCY_FILE = "latency.json"
METHOD = "batched throughput (ms/prompt), every run in one process on the same prompts, median of the repeats"


def common_prompts(run_dirs: list[Path], dataset: str, n: int, seed: int) -> pd.DataFrame | None:
    """A seeded, label-stratified sample of ``n`` prompts every run was scored on (``None``: some run lacks ``dataset``)."""
    from aims_kit.evaluation.benchmarks import run_predictions

    frames = []
    for run_dir in run_dirs:
        path = run_dir / "predictions" / f"{dataset}.jsonl"
        if not path.exists():
            return None
        frames.append(run_predictions(run_dir, dataset))
    shared = set.intersection(*(set(f["id"].astype(str)) for f in frames))
    first = frames[0][frames[0]["id"].astype(str).isin(shared)]
    frame = pd.DataFrame({"ID": first["id"].astype(str), "Prompt": first["prompt"], "label": first["gold"]})
    return data.stratified_sample(frame.reset_index(drop=True), n, seed=seed)


def time_run(run, frame: pd.DataFrame, p: RunParams, repeats: int) -> list[float]:
    """ms/prompt of ``repeats`` batched passes over ``frame`` (warm the run up first: :func:`warm_up`).

    Each pass's figure is the one a record's ``ms_per_prompt`` holds (the classifier's own clock
    around generation or the encoder's head, :func:`aims_kit.scoring.evaluate.evaluate`), not the
    wall clock of the whole call, which also counts parsing and metrics.
    """
    from aims_kit.evaluation.benchmarks import score_loaded

    return [float(score_loaded(run, frame, "latency", p, latency_sample=0, n_boot=0)[0]["ms_per_prompt"])
            for _ in range(repeats)]


def warm_up(run, frame: pd.DataFrame, p: RunParams) -> None:
    """One untimed pass on a few prompts, once per loaded run: the first call pays for oneDNN's kernel choices and
    the allocator's first buffers. Once per run, not per dataset: a new prompt length needs no new warm-up, and the
    median of the repeats absorbs what a first pass on it still costs."""
    from aims_kit.evaluation.benchmarks import score_loaded

    score_loaded(run, frame.head(4), "latency", p, latency_sample=0, n_boot=0)


def measure(out_dir: str | Path, datasets: list[str], p: RunParams, *, prompts: int = 16, repeats: int = 3,
            log=print) -> Path:
    """Time every evaluated run of ``out_dir`` on ``prompts`` shared prompts of each dataset; write :data:`LATENCY_FILE`.

    A dataset some run was not scored on is left out (claim 5 then reads that dataset's records
    and says so). Served runs are skipped: their latency is the server's, not this process's.
    """
    if repeats < 1 or prompts < 1:
        raise ValueError(f"latency: repeats ({repeats}) and prompts ({prompts}) must be at least 1")
    from aims_kit.evaluation.benchmarks import evaluated_runs
    from aims_kit.evaluation.runs import load_run

    out_dir = Path(out_dir)
    run_dirs = [r for r in evaluated_runs(out_dir) if results.read_run_config(r).get("regime") != "served"]
    frames = {d: f for d in datasets if (f := common_prompts(run_dirs, d, prompts, int(p.seed or 0))) is not None}
    rows: dict[str, dict] = {}
    device = {}
    for run_dir in run_dirs:
        run = load_run(run_dir)
        if frames:
            warm_up(run, next(iter(frames.values())), p)
        per_dataset = {}
        for dataset, frame in frames.items():
            ms = time_run(run, frame, p, repeats)
            per_dataset[dataset] = {"median": statistics.median(ms), "min": min(ms), "max": max(ms), "repeats": ms}
            log(f"{run_dir.name} · {dataset}: {per_dataset[dataset]['median']:.1f} ms/prompt "
                f"[{min(ms):.1f}, {max(ms):.1f}] over {repeats} passes of {len(frame)} prompts")
        rows[run_dir.name] = per_dataset
        if run.model is not None and not device:
            from aims_kit.models.precision import device_info

            device = device_info(run.model)
        del run
    payload = {"method": METHOD, "prompts": {d: len(f) for d, f in frames.items()}, "repeats": repeats,
               "batch_size": int(p.eval_batch_size), "device": device, "runs": rows}
    path = out_dir / LATENCY_FILE
    results.atomic_write_json(path, payload)
    return path


def read(out_dir: str | Path) -> dict | None:
    """The folder's controlled measurement, or ``None`` where none was taken."""
    path = Path(out_dir) / LATENCY_FILE
    return results.read_json(path) if path.exists() else None


def table(measured: dict | None) -> pd.DataFrame:
    """One row per (run, dataset): median ms/prompt and the spread of the repeats."""
    rows = [{"run_id": run, "dataset": dataset, "ms_median": v["median"], "ms_min": v["min"], "ms_max": v["max"],
             "repeats": len(v["repeats"])}
            for run, sets in (measured or {}).get("runs", {}).items() for dataset, v in sets.items()]
    return pd.DataFrame(rows, columns=["run_id", "dataset", "ms_median", "ms_min", "ms_max", "repeats"])


def controlled(out_dir: str | Path, records: pd.DataFrame, p, *, log=print) -> pd.DataFrame:
    """07's step: time every run on the datasets claim 5 tests (AIMS test and each real benchmark), then the table.

    ``p.latency_repeats`` 0 takes no measurement (the table of an earlier one, if any, is shown).
    """
    from aims_kit.evaluation.benchmarks import AIMS_TEST
    from aims_kit.evaluation.claims import real_benchmarks

    if p.latency_repeats > 0 and not records.empty:
        datasets = [AIMS_TEST, *real_benchmarks(records)]
        measure(out_dir, datasets, p, prompts=p.latency_prompts, repeats=p.latency_repeats, log=log)
    return table(read(out_dir))
