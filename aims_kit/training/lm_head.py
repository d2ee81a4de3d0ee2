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

from collections.abc import Iterator
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


#: Rows of ``[tokens, vocabulary]`` float32 the plain head works on at once (4 MiB at 49,152 words): small
#: enough to stay in cache, so the head's passes after the projection touch no fresh memory.
PLAIN_HEAD_BLOCK_BYTES = 2**22


class PlainLogProbs:
    """TRL's tiled head (``ChunkedLogProbFunction.apply``, same arguments, same outputs) as one projection on a CPU.

    Why: off Triton, TRL folds each tile with float32 torch ops and its backward projects every
    tile again, then multiplies the logits' gradient back in float32 matmuls. On a CPU, where
    memory is not what limits a batch of a few thousand labelled tokens, projecting once in the
    compute dtype is faster: 0.79 s against 1.89 s for the head's forward and backward at a
    distillation batch's 1,000 labelled tokens, and a student's training step 5.01 -> 4.20 s
    (2-core AMD EPYC, bf16; perf/bench_train.py, docs/measurements.md). An intent -> label batch
    labels few positions, so its step barely changes (1.02x). What follows the projection is
    :class:`LabelScores`.

    Same numbers: the projection rounds the logits to the compute dtype as TRL's tiles do, and
    everything after it runs in float32 (log-probabilities equal to 1e-6, input gradients to
    5e-5 relative in that measurement; tests/test_label_positions.py). Tokens whose logits would
    pass :data:`PLAIN_HEAD_MAX_LOGITS`, a model that soft-caps its logits, and any device but the
    CPU go to TRL's own function.
    """

    def __init__(self, tiled):
        self.tiled = tiled

    def apply(self, hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0,
              outputs=("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")):
        if (hidden.device.type != "cpu" or softcap
                or hidden.shape[0] * weight.shape[0] > PLAIN_HEAD_MAX_LOGITS):
            return self.tiled.apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs)
        autocast = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu") if autocast else hidden.dtype
        with torch.autocast("cpu", enabled=False):
            logits = F.linear(hidden.to(dtype), cast_once(weight, dtype), None if bias is None else cast_once(bias, dtype))
        return LabelScores.apply(logits, targets, logit_scale, temperature, outputs)


class LabelScores(torch.autograd.Function):
    """Log-probabilities of the targets (and TRL's optional outputs) from ``[tokens, vocabulary]`` logits, a block of rows at a time.

    Why: written as torch ops over the whole logits, the head made about seven float32 passes
    over ``[tokens, vocabulary]`` into fresh memory per step (the cast, the log-softmax, the
    entropy's exp and product; in backward the gathered gradient's zeros, the log-softmax's
    gradient, its cast), and on a CPU a 200 MB pass into fresh memory costs about 3x one into
    memory in cache. Here the only full-size float32 tensor is the log-softmax kept for backward;
    every other pass runs on :data:`PLAIN_HEAD_BLOCK_BYTES` of rows in one reused buffer. The
    head's forward and backward at a student's 1,000 labelled tokens: 539-551 -> 351-363 ms and
    804 -> 251 MB at its peak; a student's step 2.70 -> 1.96-2.18 s (2-core AMD EPYC, cpu family
    26, bf16; docs/measurements.md).

    Same numbers: each block runs the kernels autograd ran on the whole tensor, row by row, in the
    same order (cast, scale, temperature, log-softmax; in backward the gathered gradient through
    the log-softmax's own backward kernel, then ``/ temperature``, ``* scale`` and the cast to the
    logits' dtype), so log-probabilities, entropies and the log-probabilities' gradient equal the
    whole-tensor ones bit for bit (tests/test_label_positions.py). An entropy that takes a
    gradient (GRPO's entropy bonus, off in the kit) gets ``-p (log p + H)``, its exact derivative,
    equal to autograd's to rounding.
    """

    @staticmethod
    def forward(ctx, logits, targets, logit_scale, temperature, outputs):
        ctx.set_materialize_grads(False)
        tokens, vocab = logits.shape
        log_p = logits.new_empty((tokens, vocab), dtype=torch.float32)
        block = torch.empty((_block_rows(tokens, vocab), vocab), dtype=torch.float32)
        entropy = logits.new_empty(tokens, dtype=torch.float32) if "entropy" in outputs else None
        log_sum_sq = logits.new_empty(tokens, dtype=torch.float32) if "log_sum_sq_probs" in outputs else None
        mean_logits = logits.new_empty(tokens, dtype=torch.float32) if "mean_logits" in outputs else None
        is_top1 = logits.new_empty(tokens, dtype=torch.bool) if "is_top1" in outputs else None
        for rows in _row_blocks(tokens, block.shape[0]):
            z = block[: rows.stop - rows.start].copy_(logits[rows])
            if logit_scale != 1:
                z.mul_(logit_scale)
            if temperature != 1:
                z.div_(temperature)
            if mean_logits is not None:
                mean_logits[rows] = z.mean(-1)
            if is_top1 is not None:
                # argmax takes the first maximum, so a tie with an earlier token is not a top-1 prediction (as TRL counts it)
                is_top1[rows] = z.argmax(-1) == targets[rows]
            torch.log_softmax(z, -1, out=log_p[rows])
            if log_sum_sq is not None:
                log_sum_sq[rows] = torch.logsumexp(torch.mul(log_p[rows], 2, out=z), dim=-1)
            if entropy is not None:
                entropy[rows] = -torch.exp(log_p[rows], out=z).mul_(log_p[rows]).sum(-1)
        ctx.save_for_backward(log_p, targets, entropy)
        ctx.scale, ctx.temperature, ctx.dtype = logit_scale, temperature, logits.dtype
        ctx.mark_non_differentiable(*(x for x in (log_sum_sq, mean_logits, is_top1) if x is not None))
        return log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1), entropy, log_sum_sq, mean_logits, is_top1

    @staticmethod
    def backward(ctx, grad_log_probs, grad_entropy, *_):
        if grad_log_probs is None and grad_entropy is None:
            return None, None, None, None, None
        log_p, targets, entropy = ctx.saved_tensors
        tokens, vocab = log_p.shape
        grad = torch.empty((tokens, vocab), dtype=ctx.dtype)
        sparse, block = (torch.empty((_block_rows(tokens, vocab), vocab), dtype=torch.float32) for _ in range(2))
        for rows in _row_blocks(tokens, block.shape[0]):
            g_z = block[: rows.stop - rows.start]
            if grad_log_probs is None:
                g_z.zero_()
            else:
                # the gathered gradient (zeros but at the target), through the log-softmax's own backward kernel
                g = sparse[: rows.stop - rows.start].zero_().scatter_(-1, targets[rows, None], grad_log_probs[rows, None])
                torch._log_softmax_backward_data(g, log_p[rows], -1, torch.float32, out=g_z)
            if grad_entropy is not None:
                # d H / d z_j = -p_j (log p_j + H)
                g_z.sub_(torch.exp(log_p[rows]).mul_(log_p[rows] + entropy[rows, None]).mul_(grad_entropy[rows, None]))
            if ctx.temperature != 1:
                g_z.div_(ctx.temperature)
            if ctx.scale != 1:
                g_z.mul_(ctx.scale)
            grad[rows] = g_z
        return grad, None, None, None, None


def _block_rows(tokens: int, vocab: int) -> int:
    """Rows of float32 logits that fit in :data:`PLAIN_HEAD_BLOCK_BYTES` (at least one, at most all)."""
    return max(1, min(tokens, PLAIN_HEAD_BLOCK_BYTES // (4 * vocab)))


def _row_blocks(tokens: int, rows: int) -> Iterator[slice]:
    """Consecutive slices of ``rows`` rows covering ``tokens``."""
    return (slice(start, min(start + rows, tokens)) for start in range(0, tokens, rows))


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
