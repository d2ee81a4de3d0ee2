"""Training batches of rows of about the same length, for the trainers whose rows transformers cannot measure.

A batch is padded to its longest row, and AIMS prompts run from about 10 to over 200 tokens: a
random batch of 8 DPO pairs was 39% padding, a GRPO step of 4 prompts up to 37%
(perf/bench_train.py). SFT groups its rows with transformers' ``group_by_length``, which reads
an ``input_ids`` column; TRL's preference dataset has ``prompt_ids`` / ``chosen_ids`` /
``rejected_ids`` instead, and GRPO's has only the untokenized prompt, so DPO and GRPO draw their
order here.

The order differs from transformers' in one way that matters for short runs: the batches
themselves are shuffled. transformers sorts each block of 50 batches from long to short, so a
run that stops inside a block (GRPO's default run trains 3 steps) would have seen only its
longest prompts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

#: Rows are sorted by length within blocks of this many batches (transformers' choice too): wide
#: enough that neighbours in a block have similar lengths, narrow enough to stay a random sample.
BLOCK_BATCHES = 50


def grouped_order(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[int]:
    """Every index once: in batches of ``batch_size`` rows of about the same length, the full
    batches in random order and the one short batch (if the rows do not divide evenly) last."""
    permutation = torch.randperm(len(lengths), generator=generator).tolist()
    block = BLOCK_BATCHES * batch_size
    batches = []
    for start in range(0, len(permutation), block):
        rows = sorted(permutation[start:start + block], key=lambda i: lengths[i], reverse=True)
        batches += [rows[k:k + batch_size] for k in range(0, len(rows), batch_size)]
    short = [b for b in batches if len(b) < batch_size]
    full = [b for b in batches if len(b) == batch_size]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return [i for batch in shuffled + short for i in batch]


class LengthGroupedOrder(Sampler[int]):
    """:func:`grouped_order` drawn afresh each pass (epoch), from a generator seeded once: every
    process of a distributed run draws the same order."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int):
        self.lengths, self.batch_size = list(lengths), batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[int]:
        return iter(grouped_order(self.lengths, self.batch_size, self.generator))

    def __len__(self) -> int:
        return len(self.lengths)


class Reordered(Sampler[int]):
    """``positions`` (a sampler that walks the rows in order, such as TRL's GRPO repeat sampler
    with shuffling off) read through a fresh ``order`` each pass: position *i* yields row ``order[i]``."""

    def __init__(self, positions: Sampler[int], order: Sampler[int]):
        self.positions, self.order = positions, order

    def __iter__(self) -> Iterator[int]:
        order = list(self.order)
        return (order[i] for i in self.positions)

    def __len__(self) -> int:
        return len(self.positions)
