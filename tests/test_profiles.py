"""Every profile states every parameter every notebook declares: a GPU profile never inherits a CPU
notebook's default (the OpenAI Moderation sample, 24 validation rows, the judge DPO variant) unnoticed."""

import papermill as pm
import pytest

from aims_kit.core import params, profiles
from aims_kit.datasets import registry
from aims_kit.notebook import runner

#: Set by the runner for every notebook, never by a profile.
RUNNER_SET = {"out_dir", "profile"}


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_every_profile_sets_every_parameter_every_notebook_declares(name):
    profile = profiles.PROFILES[name]
    missing = [f"{nb.stem}: {param}" for nb in runner.notebooks() for param in pm.inspect_notebook(str(nb))
               if param not in RUNNER_SET and param not in profile]
    assert not missing, f"profile {name!r} does not set: " + ", ".join(missing)
    params.check_names(profile)  # and sets nothing no regime declares


@pytest.mark.parametrize("name", ["gpu-small", "paper"])
def test_gpu_profiles_run_the_papers_experiment(name):
    profile = profiles.PROFILES[name]
    assert profile["dpo_variant"] == "hard"  # the paper's label-error pairs
    assert profile["benchmark_names"] == profiles.PAPER_BENCHMARKS and profile["benchmark_limit"] == 0
    assert profile["benchmark_limits"] == {} and profile["grpo_val_limit"] == 0 and profile["eval_limit"] == 0
    assert profile["batch_size"] * profile["gradient_accumulation_steps"] == 32  # the paper's effective batch
    assert profile["grpo_lr_candidates"] and 1e-6 in profile["grpo_lr_candidates"] and profile["grpo_lr_pilot_steps"] > 0


def test_the_profiles_name_the_registrys_paper_five():
    assert sorted(registry.PAPER_FIVE) == sorted(profiles.PAPER_BENCHMARKS)
