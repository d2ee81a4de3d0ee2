"""How training scores tokens through the LM head on a CPU: only the labelled positions, in one projection.

TRL's trainers (SFT, and so the distillation students; GRPO) score each labelled token through a
fused head: hidden state x the 49,152-word vocabulary, projected in tiles and folded into running
log-sum-exp statistics so that a GPU never holds the whole ``[tokens, vocabulary]`` logits. Two of
its choices cost a CPU dearly, and :func:`cpu_lm_head` changes both for the length of a training:

- which positions it projects (:func:`label_positions_only`);
- how it projects them (:class:`PlainLogProbs`).

Off a CPU, TRL's head runs as TRL ships it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from aims_kit.models.frozen_casts import cast_once

#: Largest ``[tokens, vocabulary]`` logits the plain head holds at once (float32: 2 GiB): a
#: distillation batch holds about 1,000 x 49,152; anything larger is left to TRL's tiles.
PLAIN_HEAD_MAX_LOGITS = 2**29


@contextmanager
def label_positions_only():
    """Within it, TRL's fused LM head projects only the positions that carry a label.

    Why: on a Triton GPU TRL keeps only the positions whose label is not -100; elsewhere it
    projects every position of the padded batch, so that a compiled kernel sees one shape. The
    kit runs that head eagerly on CPU, where no shape is compiled, and an intent → label batch
    labels about an eighth of its tokens: scoring every position took half of an SFT step
    (perf/bench_train.py: 2.0x tokens/s with the same losses). TRL decides this in one private
    function; a TRL without it is left as it is.
    """
    from trl.trainer import utils as trl_utils

    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or decide(device)
    try:
        yield
    finally:
        trl_utils._use_triton = decide


class PlainLogProbs:
    """TRL's tiled head (``ChunkedLogProbFunction.apply``, same arguments, same outputs) as one projection on a CPU.

    Why: off Triton, TRL folds each tile with float32 torch ops and its backward projects every
    tile again, then multiplies the logits' gradient back in float32 matmuls. On a CPU, where
    memory is not what limits a batch of a few thousand labelled tokens, projecting once in the
    compute dtype and letting autograd keep the logits is faster: 0.79 s against 1.89 s for the
    head's forward and backward at a distillation batch's 1,000 labelled tokens, and a student's
    training step 5.01 -> 4.20 s (2-core AMD EPYC, bf16; perf/bench_train.py, docs/measurements.md).
    An intent -> label batch labels few positions, so its step barely changes (1.02x).

    Same numbers: the projection rounds the logits to the compute dtype as TRL's tiles do, and
    everything after it runs in float32 (log-probabilities equal to 1e-6, input gradients to
    5e-5 relative in that measurement; tests/test_label_positions.py). Tokens whose logits would
    pass :data:`PLAIN_HEAD_MAX_LOGITS`, and any device but the CPU, go to TRL's own function.
    """

    def __init__(self, tiled):
        self.tiled = tiled

    def apply(self, hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0,
              outputs=("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")):
        if hidden.device.type != "cpu" or hidden.shape[0] * weight.shape[0] > PLAIN_HEAD_MAX_LOGITS:
            return self.tiled.apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs)
        autocast = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu") if autocast else hidden.dtype
        with torch.autocast("cpu", enabled=False):
            logits = F.linear(hidden.to(dtype), cast_once(weight, dtype), None if bias is None else cast_once(bias, dtype))
        # A scale or temperature of 1 leaves every value as it is: skipped, since each pass over
        # [tokens, vocabulary] float32 logits (and its backward) costs a student's step ~75 ms here.
        z = logits.float()
        if logit_scale != 1:
            z = z * logit_scale
        if softcap:
            z = softcap * torch.tanh(z / softcap)
        if temperature != 1:
            z = z / temperature
        log_p = torch.log_softmax(z, dim=-1)
        log_probs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_p.exp() * log_p).sum(-1) if "entropy" in outputs else None
        with torch.no_grad():
            log_sum_sq = torch.logsumexp(2 * log_p, dim=-1) if "log_sum_sq_probs" in outputs else None
            mean_logits = z.mean(-1) if "mean_logits" in outputs else None
            # argmax takes the first maximum, so a tie with an earlier token is not a top-1 prediction (as TRL counts it)
            is_top1 = z.argmax(-1) == targets if "is_top1" in outputs else None
        return log_probs, entropy, log_sum_sq, mean_logits, is_top1


@contextmanager
def plain_head_on_cpu():
    """Within it, TRL's fused head projects in one piece on a CPU (:class:`PlainLogProbs`); elsewhere as shipped."""
    from trl.trainer import utils as trl_utils

    tiled = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if tiled is None:
        yield
        return
    trl_utils._ChunkedLogProbFunction = PlainLogProbs(tiled)
    try:
        yield
    finally:
        trl_utils._ChunkedLogProbFunction = tiled


@contextmanager
def cpu_lm_head():
    """The kit's head for a training: label positions only, projected in one piece on a CPU."""
    with label_positions_only(), plain_head_on_cpu():
        yield
