"""Train outside the notebooks, on one process or many: ``python -m aims_kit train REGIME``.

A regime's settings are exactly what its notebook would run with under papermill: the
notebook's ``parameters`` cell gives the names and defaults, the profile overrides the names the
notebook declares, ``-p key=value`` overrides those, and the same :mod:`aims_kit.notebook.experiments`
functions the notebook's cells call write the same run folders. :func:`launch_command` goes the
other way: from a notebook's current parameters to the command that repeats its training,
optionally under ``accelerate launch`` on several GPUs.
"""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path
from typing import Mapping

from aims_kit.core.params import DistillParams, DPOParams, GRPOParams, SFTParams
from aims_kit.core.paths import NOTEBOOKS_DIR
from aims_kit.core.profiles import profile_parameters

#: The notebook whose training each regime repeats.
REGIME_NOTEBOOKS = {"sft": "02_sft", "dpo": "03_dpo", "distill": "04_distill", "grpo": "05_grpo"}
#: The typed parameters each regime's training builds from the notebook's values.
REGIME_PARAMS = {"sft": SFTParams, "dpo": DPOParams, "distill": DistillParams, "grpo": GRPOParams}
#: The accelerate configs shipped for several GPUs (``configs/accelerate/``), by name.
ACCELERATE_CONFIGS = ("ddp", "deepspeed_zero2", "deepspeed_zero3")


def notebook_defaults(regime: str) -> dict:
    """The names and default values of the regime notebook's ``parameters`` cell."""
    import papermill as pm

    if regime not in REGIME_NOTEBOOKS:
        raise ValueError(f"unknown regime {regime!r}; choose one of {', '.join(REGIME_NOTEBOOKS)}")
    declared = pm.inspect_notebook(str(NOTEBOOKS_DIR / f"{REGIME_NOTEBOOKS[regime]}.ipynb"))
    return {name: ast.literal_eval(spec["default"]) for name, spec in declared.items()}


def regime_parameters(regime: str, profile: str, overrides: Mapping | None = None) -> dict:
    """What the regime's notebook would see under papermill with this profile and these overrides.

    An override the notebook does not declare is an error naming it (papermill would drop it silently).
    """
    defaults = notebook_defaults(regime)
    unknown = sorted(set(overrides or {}) - set(defaults))
    if unknown:
        raise ValueError(f"{REGIME_NOTEBOOKS[regime]} has no parameter {', '.join(unknown)} (it takes: {', '.join(defaults)})")
    injected = profile_parameters(profile, dict(overrides or {}))
    return {name: injected.get(name, default) for name, default in defaults.items()}


def train(regime: str, params: dict, *, log=print) -> list[Path]:
    """Run the regime's training cells with ``params`` (see :func:`regime_parameters`); returns the run folders."""
    from aims_kit.core import results
    from aims_kit.notebook import experiments

    if regime not in REGIME_PARAMS:
        raise ValueError(f"unknown regime {regime!r}; choose one of {', '.join(REGIME_NOTEBOOKS)}")
    p = REGIME_PARAMS[regime].from_params(params)  # parsed once, here, as a notebook's first cell does
    out = results.resolve_out_dir(p.out_dir)
    splits = experiments.load_splits(p.data_source, p.seed)
    if regime == "sft":
        return [experiments.sft_run(p, splits, condition, out) for condition in p.conditions]
    if regime == "dpo":
        sft_dir = experiments.find_sft_run(out, p.sft_run, seed=p.seed)
        mined = experiments.mine_dpo_pairs(p, splits, sft_dir)
        run_dir = experiments.dpo_run(p, splits, sft_dir, mined, out)
        return [run_dir] if run_dir else []
    if regime == "distill":
        trace_sets, skipped, teacher = experiments.distill_traces(p, splits, out)  # as 04 does: synthetic intents from out's SFT run
        for name, reason in skipped.items():
            log(f"skipped {name}: {reason}")
        return [experiments.distill_run(p, splits, trace_set, teacher, out) for trace_set in trace_sets.values()]
    return [experiments.grpo_run(p, splits, reward_set, out) for reward_set in p.reward_sets]


def launch_command(namespace: Mapping, regime: str, *, processes: int = 1, config: str = "ddp") -> str:
    """The shell command that repeats this notebook's training with its current parameter values.

    ``namespace`` is the notebook's ``globals()`` (or any dict holding its parameters): only the
    names its ``parameters`` cell declares are read, and only values that differ from what the
    profile gives are written as ``-p`` overrides. ``processes`` > 1 wraps the command in
    ``accelerate launch`` with ``configs/accelerate/<config>.yaml``.
    """
    if config not in ACCELERATE_CONFIGS:
        raise ValueError(f"unknown accelerate config {config!r}; choose one of {', '.join(ACCELERATE_CONFIGS)}")
    defaults = notebook_defaults(regime)
    current = {name: namespace[name] for name in defaults if name in namespace}
    profile = current.get("profile", defaults["profile"])
    baseline = regime_parameters(regime, profile)
    args = ["train", regime, "--profile", profile]
    for name, value in current.items():
        if name not in ("profile", "out_dir") and value != baseline[name]:
            args += ["-p", f"{name}={json.dumps(value)}"]
    if current.get("out_dir"):
        args += ["--out", str(current["out_dir"])]
    if processes > 1:
        prefix = ["accelerate", "launch", "--config_file", f"configs/accelerate/{config}.yaml", "--num_processes", str(processes), "-m", "aims_kit"]
    else:
        prefix = ["python", "-m", "aims_kit"]
    return shlex.join(prefix + args)
