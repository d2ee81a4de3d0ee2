"""DPO and GRPO batches of rows of about the same length: the order, and the trainers that draw it."""

import pandas as pd
import pytest
import torch
from run_factory import flipped_pairs

from aims_kit.models.loading import load_model
from aims_kit.notebook import experiments
from aims_kit.training.length_groups import LengthGroupedOrder, Reordered, grouped_order


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[k:k + size] for k in range(0, len(order), size)]


def test_grouped_order_holds_every_row_once_in_batches_of_near_lengths_in_random_order():
    lengths = torch.randint(5, 300, (203,), generator=torch.Generator().manual_seed(0)).tolist()
    order = grouped_order(lengths, 8, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(203))
    groups = batches(order, 8)
    assert [len(b) for b in groups] == [8] * 25 + [3]  # the one short batch comes last
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in groups[:-1]) / 25
    assert spread < 30  # random batches of 8 from 5..300 spread about 230 tokens
    tops = [max(lengths[i] for i in b) for b in groups[:-1]]
    assert tops != sorted(tops, reverse=True) and tops != sorted(tops)  # not long-to-short: batches are shuffled


def test_each_pass_draws_a_new_order_and_a_seed_repeats_the_sequence():
    lengths = list(range(40))
    first, second = LengthGroupedOrder(lengths, 4, seed=3), LengthGroupedOrder(lengths, 4, seed=3)
    one, two = list(first), list(first)
    assert one != two and sorted(one) == sorted(two) == lengths
    assert [list(second), list(second)] == [one, two]
    assert len(first) == 40


def test_trl_repeat_sampler_read_through_the_order_keeps_each_prompts_rollouts_together():
    from trl.trainer.utils import RepeatSampler

    lengths = [10] * 8 + [200] * 8
    repeats = RepeatSampler(range(16), mini_repeat_count=3, batch_size=4, repeat_count=1, shuffle=False)
    drawn = list(Reordered(repeats, LengthGroupedOrder(lengths, 4, seed=0)))
    assert len(drawn) == 48
    for step in batches(drawn, 12):  # a generation batch: 4 prompts x 3 rollouts
        assert all(len(set(step[k:k + 3])) == 1 for k in range(0, 12, 3))
        assert len({lengths[i] for i in step}) == 1  # short prompts with short ones, long with long
    assert sorted(set(drawn)) == list(range(16))


def mixed_lengths(frame: pd.DataFrame) -> pd.DataFrame:
    """Half the prompts short, half padded out to several hundred characters."""
    frame = frame.copy()
    frame.loc[frame.index[::2], "Prompt"] = frame["Prompt"].iloc[::2].str.slice(0, 20)
    frame.loc[frame.index[1::2], "Prompt"] = frame["Prompt"].iloc[1::2] + " Please explain in detail." * 12
    return frame


@pytest.fixture(scope="module")
def train_rows():
    return mixed_lengths(experiments.load_splits("", 22).train.head(16))


def mixes(loader, key: str = "attention_mask", boundary: int = 130) -> list[bool]:
    """Per batch, whether it holds rows (prompt + answer, in tokens) on both sides of ``boundary``:
    :func:`mixed_lengths` puts every pair or prompt of these rows well on one side of it."""
    sides = [set((batch[key].sum(1) > boundary).tolist()) for batch in loader]
    return [len(side) == 2 for side in sides]


def test_the_kits_dpo_trainer_batches_pairs_of_near_lengths(train_rows, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from aims_kit.training.dpo import length_grouped
    from aims_kit.training.dpo_pairs import dpo_records

    records = Dataset.from_list(dpo_records(flipped_pairs(train_rows)))
    config = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, use_cpu=True, report_to="none", seed=5)

    def build(base):
        from peft import LoraConfig, get_peft_model

        model, tokenizer = load_model("tiny-random", trainable=True)
        peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
        return base(model=peft, args=config, train_dataset=records, processing_class=tokenizer)

    grouped, plain = mixes(build(length_grouped(DPOTrainer)).get_train_dataloader()), mixes(build(DPOTrainer).get_train_dataloader())
    assert len(grouped) == 4 and not any(grouped)  # a batch holds short pairs or long ones
    assert any(plain)  # TRL's random batches mix them (the same data, the same seed)


def test_the_kits_grpo_trainer_rolls_out_prompts_of_near_lengths_together(train_rows, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from aims_kit.datasets import formats
    from aims_kit.training.grpo import grpo_records, length_grouped

    model, tokenizer = load_model("tiny-random", trainable=True)
    config = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=2, use_cpu=True,
                        report_to="none", seed=5, shuffle_dataset=False, chat_template_kwargs=formats.CHAT_TEMPLATE_KWARGS)
    trainer = length_grouped(GRPOTrainer)(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                                          args=config, train_dataset=Dataset.from_list(grpo_records(train_rows)),
                                          processing_class=tokenizer)
    steps = list(trainer.get_train_dataloader())
    assert len(steps) == 4
    for step in steps:
        prompts = [str(row["prompt"]) for row in step]
        assert all(prompts[k] == prompts[k + 1] for k in range(0, 8, 2))  # each prompt's two rollouts side by side
        assert len({len(p) > 400 for p in prompts}) == 1  # short prompts (~200 characters) with short ones, long (600+) with long
    with pytest.raises(ValueError, match="shuffle_dataset=False"):
        trainer.shuffle_dataset = True
        trainer.get_train_dataloader()
