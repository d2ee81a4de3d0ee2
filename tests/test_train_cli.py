"""`python -m aims_kit train`: the notebook's settings outside the notebook, on one process or two (gloo, CPU)."""

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from run_factory import adapter_run, flipped_pairs
from safetensors import safe_open

from aims_kit import Classifier
from aims_kit.__main__ import build_parser, main
from aims_kit.core import paths, profiles, results
from aims_kit.core.params import BenchmarkParams
from aims_kit.datasets import benchmarks
from aims_kit.evaluation import benchmarks as benchmark_eval
from aims_kit.evaluation.runs import load_run
from aims_kit.notebook import experiments, launch

SMALL_EVAL = ["-p", "eval_limit=8"]
#: One launch of two processes trains every regime in turn, each as ``python -m aims_kit train`` would.
REGIME_COMMANDS = {
    "sft": ["-p", 'conditions=["intent_label"]'],
    "dpo": ["-p", "dpo_pairs_from={pairs}"],  # the tiny model writes no intent to mine: pairs made for the test
    "grpo": ["-p", 'reward_sets=["label_only"]'],
    "distill": ["-p", 'distill_conditions=["human_intent"]'],
}


def _adapter_keys(run_dir):
    with safe_open(str(run_dir / "adapter" / "adapter_model.safetensors"), "pt") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """A single-process run with the same LoRA settings (random adapter: the shapes are what matter)."""
    return adapter_run(tmp_path_factory.mktemp("single"), "intent_label")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """Every regime trained by two CPU processes (gloo) into one out folder: ``(completed process, out)``."""
    if importlib.util.find_spec("torch.distributed.run") is None:
        pytest.skip("torchrun is not available")
    out = tmp_path_factory.mktemp("ddp")
    splits = experiments.load_splits("", 22)
    pairs = out / "pairs.jsonl"
    results.atomic_write_jsonl(pairs, pd.concat([flipped_pairs(splits.train.head(8)), flipped_pairs(splits.val.head(2))]).to_dict("records"))
    commands = [["train", regime, "--profile", "smoke", *(a.format(pairs=pairs) for a in args), *SMALL_EVAL, "--out", str(out)]
                for regime, args in REGIME_COMMANDS.items()]
    # This checkout's aims_kit, not another one installed in the environment (the script's folder is tests/).
    path = os.pathsep.join(filter(None, [str(paths.REPO_DIR), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(Path(__file__).parent / "train_in_sequence.py"),
         json.dumps(commands)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, out


def test_torchrun_two_processes_write_one_run_that_loads_like_a_single_process_run(ddp, single_run):
    done, out = ddp
    runs = results.find_runs(out, regime="sft")
    assert len(runs) == 1 and done.stdout.splitlines().count(str(runs[0])) == 1  # printed once, by rank 0
    run_dir = runs[0]
    config = results.read_run_config(run_dir)
    assert config["world_size"] == 2 and results.read_run_config(single_run)["world_size"] == 1
    assert config["profile"] == "smoke" and config["train"]["max_steps"] == profiles.PROFILES["smoke"]["max_steps"]
    assert sorted(p.name for p in (run_dir / "adapter").iterdir() if p.suffix in (".json", ".safetensors")) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not (run_dir / "history").exists()  # the test record was written once, not once per process
    record = results.read_json(run_dir / "results" / "aims_test.json")
    assert record["n"] == 8 and record["config"]["world_size"] == 2
    assert _adapter_keys(run_dir) == _adapter_keys(single_run)

    path = benchmarks.FIXTURES_DIR / "xstest_prompts.csv"
    frame = benchmarks.load_benchmark("xstest", path)
    for run in (run_dir, single_run):
        scored = benchmark_eval.evaluate_loaded(load_run(run), frame, "fixture:xstest",
                                                BenchmarkParams(latency_sample=0, n_boot=20))
        assert scored["n"] == len(frame) and 0.0 <= scored["f1"] <= 1.0
    assert len(Classifier.from_run(run_dir).classify(["How do I stop a frozen program?"])) == 1


#: What each regime's run folder holds besides the adapter and records, written by rank 0 alone.
REGIME_FILES = {"dpo": ["pairs.jsonl", "train_data.json"], "grpo": ["reward_log.jsonl", "val_selection.json"],
                "distill": ["traces.jsonl", "trace_screen.json", "train_data.json"]}


@pytest.mark.parametrize("regime", list(REGIME_FILES))
def test_torchrun_trains_every_regime_into_one_run_folder_with_world_size_two(ddp, regime):
    done, out = ddp
    runs = results.find_runs(out, regime=regime)
    assert len(runs) == 1 and done.stdout.splitlines().count(str(runs[0])) == 1  # one folder, printed once, by rank 0
    run_dir = runs[0]
    assert results.read_run_config(run_dir)["world_size"] == 2
    assert all((run_dir / name).is_file() for name in ["train_log.json", *REGIME_FILES[regime]])
    assert not (run_dir / "history").exists()
    record = results.read_json(run_dir / "results" / "aims_test.json")
    assert record["n"] == 8 and record["config"]["world_size"] == 2
    if regime == "dpo":  # the pairs file's train rows, trained on by both processes, kept once
        assert len(results.read_jsonl(run_dir / "pairs.jsonl")) == 10
        assert results.read_run_config(run_dir)["pairs_from"].endswith("pairs.jsonl")
    if regime == "grpo":  # one validation snapshot history, one reward row per step averaged over both processes
        steps = profiles.PROFILES["smoke"]["grpo_steps"]
        assert [row["step"] for row in results.read_jsonl(run_dir / "reward_log.jsonl")] == list(range(steps))
        snapshots = [p["step"] for p in results.read_json(run_dir / "val_selection.json")["history"]]
        assert snapshots[-1] == steps and len(set(snapshots)) == len(snapshots)
    load_run(run_dir)  # loads like a single-process run, the adapter-active check included


def test_train_uses_the_notebook_parameters_the_profile_and_overrides(capsys):
    params = launch.regime_parameters("sft", "smoke", {"seed": 23})
    defaults = launch.notebook_defaults("sft")
    assert set(params) == set(defaults) and params["seed"] == 23
    assert params["max_steps"] == profiles.PROFILES["smoke"]["max_steps"] and params["conditions"] == defaults["conditions"]
    assert main(["train", "sft", "--profile", "smoke", "-p", "n_boot=5"]) == 2
    assert "02_sft has no parameter n_boot" in capsys.readouterr().err
    for regime in launch.REGIME_NOTEBOOKS:  # every training notebook takes quantize; every profile leaves it to the device
        assert launch.regime_parameters(regime, "smoke")["quantize"] is None
        assert launch.regime_parameters(regime, "smoke", dict([profiles.parse_override("quantize=true")]))["quantize"] is True


@pytest.mark.parametrize("processes", [1, 8])
def test_launch_command_repeats_the_notebook_parameters(processes, tmp_path):
    namespace = {**launch.regime_parameters("sft", "smoke"), "seed": 23, "conditions": ["intent_label"], "out_dir": str(tmp_path), "unrelated": 1}
    command = launch.launch_command(namespace, "sft", processes=processes)
    argv = shlex.split(command)
    if processes == 1:
        assert argv[:3] == ["python", "-m", "aims_kit"]
    else:
        assert argv[:2] == ["accelerate", "launch"] and argv[argv.index("--num_processes") + 1] == "8"
        assert (launch.NOTEBOOKS_DIR.parent / argv[argv.index("--config_file") + 1]).is_file()
    args = build_parser().parse_args(argv[argv.index("aims_kit") + 1:])
    overrides = dict(profiles.parse_override(item) for item in args.param)
    assert overrides == {"seed": 23, "conditions": ["intent_label"]}  # only what differs from the profile
    rebuilt = launch.regime_parameters(args.regime, args.profile, {**overrides, "out_dir": str(args.out)})
    assert rebuilt == {k: v for k, v in namespace.items() if k != "unrelated"}


def test_accelerate_configs_load_with_accelerate():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for name in launch.ACCELERATE_CONFIGS:
        config = load_config_from_file(str(launch.NOTEBOOKS_DIR.parent / "configs" / "accelerate" / f"{name}.yaml"))
        kinds[name] = (config.distributed_type.value, (config.deepspeed_config or {}).get("zero_stage"), config.mixed_precision)
    assert kinds == {
        "ddp": ("MULTI_GPU", None, "bf16"),
        "deepspeed_zero2": ("DEEPSPEED", 2, "bf16"),
        "deepspeed_zero3": ("DEEPSPEED", 3, "bf16"),
    }
