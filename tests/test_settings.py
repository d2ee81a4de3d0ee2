"""Typed notebook parameters: every declared name is known, a misspelt one is an error naming it."""

import papermill as pm
import pytest

from aims_kit.core import params as settings
from aims_kit.core.paths import REPO_DIR
from aims_kit.core.profiles import PROFILES
from aims_kit.notebook import experiments, runner
from aims_kit.training.grpo import GRPOSettings


def test_every_notebook_and_profile_parameter_is_known():
    declared = {name for nb in sorted((REPO_DIR / "notebooks").glob("*.ipynb")) for name in pm.inspect_notebook(str(nb))}
    in_profiles = {name for values in PROFILES.values() for name in values}
    assert not (declared | in_profiles) - set(settings.KNOWN)


def test_a_misspelt_parameter_is_an_error_that_names_it():
    with pytest.raises(settings.UnknownParameterError, match=r"unknown parameter 'n_bot'; did you mean 'n_boot'\?"):
        settings.RunParams.from_params({"seed": 1, "n_bot": 50})
    with pytest.raises(settings.UnknownParameterError, match="'grpo_stpes'"):
        runner.run_all("smoke", {"grpo_stpes": 3}, None)


def test_regime_settings_read_their_names_and_keep_the_defaults():
    params = {"seed": 7, "dpo_k": 3, "grpo_beta": 0.5, "distill_max_new_tokens": 99}
    assert settings.DPOParams.from_params(params).dpo_k == 3 and settings.DPOParams.from_params(params).seed == 7
    assert settings.RunParams.from_params(params).answer_budget("reasoning_label") == 99
    assert settings.RunParams.from_params(params).answer_budget("intent_label") == settings.RunParams.max_new_tokens
    grpo = experiments.grpo_settings(settings.GRPOParams.from_params(params), "label_only")
    assert grpo.beta == 0.5 and grpo.steps == GRPOSettings.steps and grpo.seed == 7


def test_from_notebook_gathers_every_declared_name_without_a_list():
    namespace = {"seed": 3, "grpo_steps": 5, "benchmark_limit": 10, "splits": object(), "__name__": "x"}
    grpo, bench = settings.GRPOParams.from_notebook(namespace), settings.BenchmarkParams.from_notebook(namespace)
    assert (grpo.seed, grpo.grpo_steps, bench.benchmark_limit) == (3, 5, 10)  # the notebook's other globals are not parameters
    assert not hasattr(grpo, "benchmark_limit")  # another regime's name is ignored, not an error
