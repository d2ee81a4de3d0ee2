"""DPO pair mining on a handcrafted generator with known outcomes, on the tiny random model, and a tiny DPO run."""

import pandas as pd
import pytest
from run_factory import flipped_pairs

from aims_kit.core import results
from aims_kit.core.params import DPOParams, RunParams
from aims_kit.datasets import formats
from aims_kit.training import dpo_pairs
from aims_kit.training.dpo_pairs import (
    MiningSettings,
    balance_pairs,
    dpo_records,
    mine_pairs,
    pairs_table,
)

K = 3
# Per prompt: gold label, gold intent, the k sampled completions.
ROWS = {
    "p1": ("harmful", "The user wants bomb instructions.", [
        "Intent: short wrong; Harm: harmful",
        "Intent: a much longer wrong intent about baking bread; Harm: harmful",
        "Intent: bomb making; Harm: harmful",
    ]),
    "p2": ("safe", "The user wants a cake recipe.", [
        "Intent: cake recipe; Harm: safe",
        "Intent: a bad paraphrase; Harm: safe",
        "Intent: cake recipe; Harm: safe",
    ]),
    "p3": ("safe", "The user wants to learn chemistry.", [
        "Intent: poison someone; Harm: safe",
        "Intent: chemistry homework; Harm: safe",
        "Intent: chemistry homework; Harm: safe",
    ]),
    "p4": ("harmful", "The user wants to stalk a person.", ["harmful", "gibberish without fields", "Harm: harmful"]),
    "p5": ("safe", "The user wants gardening tips.", [
        "Intent: unreadable; Harm: safe",
        "Intent: gardening; Harm: safe",
        "Intent: gardening; Harm: safe",
    ]),
}
# What the model answers when re-classifying an intent on its own.
RECLASSIFY = {
    "short wrong": "safe",
    "a much longer wrong intent about baking bread": "safe",
    "bomb making": "harmful",
    "cake recipe": "safe",
    "a bad paraphrase": "safe",
    "poison someone": "Intent: poisoning; Harm: harmful",  # an echo of the full format still parses
    "chemistry homework": "safe",
    "unreadable": "???",  # unparseable: counted, neither right nor wrong, never a reject
    "gardening": "unharmful",  # a synonym: safe, never "harmful" by substring
}


class StubGenerator:
    """Answers from the tables above and records how it was called."""

    def __init__(self):
        self.calls = []

    def __call__(self, conversations, *, k, do_sample, temperature, max_new_tokens):
        self.calls.append({"n": len(conversations), "k": k, "do_sample": do_sample, "temperature": temperature})
        out = []
        for conv in conversations:
            user = conv[-1]["content"]
            if do_sample:
                out.extend(ROWS[user][2][:k])
            else:
                assert conv == formats.intent_reclassify_messages(user.removeprefix("Intent: ").split("\n")[0])
                out.append(RECLASSIFY[user.removeprefix("Intent: ").split("\n")[0]])
        return out


def frame(ids=tuple(ROWS)):
    return pd.DataFrame(
        [{"ID": i, "Prompt": i, "label": ROWS[i][0], "Intent": ROWS[i][1], "split": "train"} for i in ids]
    )


def test_hard_pairs_pick_the_longest_wrong_label_sample():
    gen = StubGenerator()
    pairs, report = mine_pairs(frame(), gen, MiningSettings(k=K, temperature=0.8, balance="none"))
    assert gen.calls[0] == {"n": 5, "k": K, "do_sample": True, "temperature": 0.8}
    assert gen.calls[1]["do_sample"] is False and gen.calls[1]["k"] == 1
    assert gen.calls[1]["n"] == 5 * K - 3  # p4's three samples have no intent to re-classify
    by_id = pairs.set_index("id")
    assert sorted(by_id.index) == ["p1", "p3"]
    p1 = by_id.loc["p1"]
    assert p1["rejected_intent"] == "a much longer wrong intent about baking bread"
    assert p1["rejected"] == "Intent: a much longer wrong intent about baking bread; Harm: safe"
    assert p1["chosen"] == formats.format_target("intent_label", "harmful", intent=ROWS["p1"][1])
    assert p1["candidates"] == 2 and p1["source"] == "wrong_label"
    assert by_id.loc["p3", "rejected_label"] == "harmful"
    assert report.samples == 15 and report.samples_without_intent == 3
    assert report.wrong_label_samples == 3 and report.unreadable_reclassifications == 1
    assert report.prompts_without_pair == 3
    assert report.pairs_per_class == {"harmful": 1, "safe": 1}


class StubJudge:
    name = "stub-judge"

    def __init__(self):
        self.seen = []

    def grade(self, pairs):
        self.seen.extend(pairs)
        return ["bad" if "bad" in pred or "unreadable" in pred else "good" for _, pred in pairs]


def test_judge_variant_adds_bad_matches_and_prefers_wrong_labels():
    judge = StubJudge()
    pairs, report = mine_pairs(frame(), StubGenerator(), MiningSettings(k=K, variant="judge", balance="none"), judge=judge)
    # Only right-label samples are judged, always against the gold intent.
    assert ("The user wants bomb instructions.", "bomb making") in judge.seen
    assert all(pred != "short wrong" for _, pred in judge.seen)
    by_id = pairs.set_index("id")
    assert sorted(by_id.index) == ["p1", "p2", "p3"]  # p5's only judge-bad intent was never re-classified readably
    assert ("The user wants gardening tips.", "unreadable") not in judge.seen
    assert by_id.loc["p2", "source"] == "judge_bad" and by_id.loc["p2", "rejected"] == "Intent: a bad paraphrase; Harm: safe"
    assert by_id.loc["p1", "source"] == "wrong_label"  # p1 has wrong-label samples: they win
    assert report.judge_bad_samples == 1 and report.prompts_without_pair == 2
    with pytest.raises(ValueError, match="needs a judge"):
        mine_pairs(frame(), StubGenerator(), MiningSettings(k=K, variant="judge"))


def test_undersampling_balances_classes_and_keeps_everything_when_a_class_is_empty():
    pairs, report = mine_pairs(frame(), StubGenerator(), MiningSettings(k=K, variant="judge"), judge=StubJudge())
    assert report.pairs_per_class_mined == {"harmful": 1, "safe": 2}
    assert report.pairs_per_class == {"harmful": 1, "safe": 1} and report.balanced
    assert len(pairs) == 2
    only_safe = pairs[pairs["gold_label"] == "safe"]
    kept, balanced = balance_pairs(only_safe, "undersample", seed=1)
    assert len(kept) == len(only_safe) and not balanced


def test_generator_returning_the_wrong_number_of_texts_is_an_error():
    def short(conversations, **kwargs):
        return ["Intent: x; Harm: safe"]

    with pytest.raises(ValueError, match="returned 1 texts"):
        mine_pairs(frame(), short, MiningSettings(k=2))


def test_records_and_table_show_chosen_against_rejected():
    pairs, _ = mine_pairs(frame(), StubGenerator(), MiningSettings(k=K, balance="none"))
    records = dpo_records(pairs)
    assert records[0]["prompt"] == formats.prompt_messages("p1", "intent_label")
    assert records[0]["chosen"][0]["content"].startswith("Intent: The user wants bomb")
    assert records[0]["rejected"][0]["content"].endswith("Harm: safe")
    table = pairs_table(pairs)
    assert list(table["rejected intent (sampled)"]) == list(pairs["rejected_intent"])


@pytest.fixture(scope="module")
def splits():
    from aims_kit.notebook import experiments

    return experiments.load_splits("", 22)


def test_mining_on_the_tiny_random_model(splits):
    """The real generate/re-classify path. The untrained model writes no fields, so samples are
    given an ``Intent:`` prefix; re-classification then runs on the model itself."""
    from aims_kit.models.loading import load_model
    from aims_kit.training.dpo_pairs import model_generator

    model, tokenizer = load_model("tiny-random")
    real = model_generator(model, tokenizer, batch_size=8)

    def prefixed(conversations, **kw):
        texts = real(conversations, **kw)
        return ["Intent: " + (t.replace("\n", " ").strip() or "empty") for t in texts] if kw["do_sample"] else texts

    rows = splits.train.head(4)
    pairs, report = mine_pairs(rows, prefixed, MiningSettings(k=2, max_new_tokens=6, reclassify_max_new_tokens=3, balance="none"))
    assert report.samples == 8 and report.samples_without_intent == 0
    assert len(pairs) + report.prompts_without_pair == 4
    assert (pairs["rejected_label"] != pairs["gold_label"]).all()
    assert set(pairs["split"]) <= {"train"}


def test_dpo_run_starts_from_a_frozen_copy_of_the_sft_adapter(splits, tmp_path):
    """Tiny SFT then DPO through the notebook step: at the first step policy == reference
    (reward margins exactly 0), so the reference is the SFT adapter, not the base model; only
    the policy adapter is saved, with the pairs, the parent run and the variant."""
    from aims_kit.notebook import experiments
    from aims_kit.training.common import TrainSettings
    from aims_kit.training.dpo import DpoSettings, load_pairs, train_dpo
    from aims_kit.training.dpo_pairs import MiningReport
    from aims_kit.training.sft import train_sft

    settings = TrainSettings(learning_rate=1e-2, max_steps=2, batch_size=4, eval_steps=1, max_length=128)
    sft_dir = results.create_run(tmp_path, "sft", experiments.run_config(RunParams(model="tiny-random"), "sft", "intent_label", settings))
    train_sft("tiny-random", splits.train.head(8), splits.val.head(4), condition="intent_label", settings=settings, run_dir=sft_dir)

    mined = dpo_pairs.MinedPairs(
        flipped_pairs(splits.train.head(8)), flipped_pairs(splits.val.head(4)),
        {"train": MiningReport(prompts=8), "val": MiningReport(prompts=4)}, MiningSettings(k=2),
    )
    params = {"model": "tiny-random", "profile": "test", "dpo_learning_rate": 1e-2, "dpo_max_steps": 2, "batch_size": 4,
              "eval_steps": 1, "eval_limit": 4, "max_new_tokens": 8}
    run_dir = experiments.dpo_run(DPOParams.from_params(params), splits, sft_dir, mined, tmp_path)
    log = results.read_json(run_dir / "train_log.json")
    first = next(e for e in log if "rewards/margins" in e)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert any("eval_loss" in e for e in log)
    assert not (run_dir / "adapter" / "ref").exists()
    config = results.read_run_config(run_dir)
    assert (config["regime"], config["condition"], config["variant"]) == ("dpo", "intent_label", "hard")
    assert config["parent_run"] == sft_dir.name and config["train"]["learning_rate"] == 1e-2
    assert len(load_pairs(run_dir)) == 12
    assert results.read_json(run_dir / "results" / "aims_test.json")["regime"] == "dpo"
    with pytest.raises(Exception, match="may only use the 'val' split"):
        train_dpo(sft_dir, mined.train, flipped_pairs(splits.test.head(4)),
                  settings=settings, dpo=DpoSettings(), run_dir=tmp_path / "bad")


def test_min_class_share_caps_the_larger_class_and_keeps_all_of_the_smaller():
    pairs = pd.DataFrame({"gold_label": ["harmful"] * 10 + ["safe"] * 3, "id": [str(i) for i in range(13)]})
    kept, within = balance_pairs(pairs, "undersample", seed=0, min_class_share=0.3)
    counts = kept["gold_label"].value_counts().to_dict()
    assert counts == {"harmful": 7, "safe": 3} and within  # 3 safe are 30% of 10 pairs
    assert balance_pairs(pairs, "undersample", seed=0)[0]["gold_label"].value_counts().to_dict() == {"harmful": 3, "safe": 3}
    untouched, within = balance_pairs(pairs, "none", seed=0, min_class_share=0.3)
    assert len(untouched) == 13 and not within
    with pytest.raises(ValueError, match="min_class_share"):
        MiningSettings(min_class_share=0.7)
