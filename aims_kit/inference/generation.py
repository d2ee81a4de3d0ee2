"""Generation: how a model's answers are produced, apart from how they are scored.

Batched greedy (or sampled) generation with left padding, length-sorted batches and the KV
cache; stop strings checked on token tensors; prompts cut to fit the context (counted, never
silent); a CUDA out-of-memory batch halved and retried. Everything that makes a model write —
evaluation, :class:`aims_kit.Classifier`, judges, teachers, DPO pair mining, the playground —
comes through here, so an answer never depends on who asked. An ``engine`` (the vLLM backend,
:mod:`aims_kit.inference.vllm`, or a served endpoint, :mod:`aims_kit.inference.engines`) can stand in for
transformers with the same :class:`aims_kit.inference.engines.Generation` result. Scoring (parse, metrics, latency,
records) is :mod:`aims_kit.scoring.evaluate`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from aims_kit.core.progress import progress_bar
from aims_kit.datasets import formats, prompt_formats
from aims_kit.datasets.prompt_formats import ModelInput, PromptFormat
from aims_kit.inference.engines import Engine, Generation
from aims_kit.inference.kv_cache import ReservedCache
from aims_kit.models.precision import device_info, inference_autocast


def chat_inputs(tokenizer, conversations: Sequence[list[dict]]) -> list[list[int]]:
    """Token ids of each conversation with the assistant turn opened (the generation prompt).

    Rendered with :data:`aims_kit.datasets.formats.CHAT_TEMPLATE_KWARGS`: a thinking template (Qwen3)
    then ends the prompt in its empty think block, so the next token is the answer's first.
    """
    return [
        list(tokenizer.apply_chat_template(
            conv, add_generation_prompt=True, tokenize=True, return_dict=False, **formats.CHAT_TEMPLATE_KWARGS
        ))
        for conv in conversations
    ]


def encode_inputs(tokenizer, inputs: Sequence[ModelInput]) -> list[list[int]]:
    """Token ids of each rendered input (:data:`aims_kit.datasets.prompt_formats.ModelInput`).

    A conversation goes through the chat template (:func:`chat_inputs`); plain text (the ``raw``
    and ``paper-student`` formats) is tokenized as it is, with the tokenizer's own start token
    and no template, as vLLM's ``generate`` and TRL's prompt-completion records tokenize it.
    """
    if prompt_formats.is_plain_text(inputs):
        return [list(tokenizer(text, add_special_tokens=True)["input_ids"]) for text in inputs]
    return chat_inputs(tokenizer, inputs)


#: Padded prompt tokens one batch may hold. Prompts are sorted by length and a batch closes at
#: ``batch_size`` rows or at this many padded tokens, whichever comes first: short prompts
#: (XSTest, ~40 tokens with the template) batch wide, long ones (a 500-token jailbreak) narrow,
#: so a few long prompts do not pad a wide batch. On 2 CPU cores SmolLM2 label scoring took 68
#: ms/prompt at 32 rows against 45 at 16 on AIMS test, where lengths vary most.
BATCH_TOKENS = 2048
#: The same cap for generation, on the prompts decoding side by side in the continuous batch
#: (:func:`decode_batch`), where a step decodes one token per row and costs little per row. With
#: finished rows' places refilled, a reasoning student (96-token answers, 2-core AMD EPYC, bf16,
#: 64 rows) took, against fixed batches at 4,096: 0.93x the time at 4,096 and 0.82-0.85x at 8,192
#: on AIMS test; 0.96x and 0.79x on 100 OpenAI Moderation prompts (0.76x at 16,384).
GENERATE_BATCH_TOKENS = 8192


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int = BATCH_TOKENS) -> list[list[int]]:
    """Row indices grouped into batches of similar length, each within ``batch_size`` rows and ``max_tokens`` padded tokens.

    A row longer than ``max_tokens`` on its own gets a batch of one.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        # sorted ascending, so the newcomer is the longest row
        if current is not None and len(current) < batch_room(lengths[i], batch_size, max_tokens):
            current.append(i)
        else:
            batches.append([i])
    return batches


def batch_room(length: int, batch_size: int, max_tokens: int | None) -> int:
    """How many prompts of ``length`` tokens (the longest) one batch holds: ``batch_size``, and no more
    padded tokens (rows x that length) than ``max_tokens`` (``None``: no cap), but one at least."""
    return min(batch_size, max(1, max_tokens // length)) if max_tokens else batch_size


#: Generation-config samplers :func:`decode_batch` does not apply (each at its neutral value there).
OTHER_SAMPLERS = {"top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


def sampling_top_k(model) -> int | None:
    """The top-k ``model.generate`` samples with for ``model``, as the kit calls it (``top_k=None``: the
    generation config's, else none, 0), or ``None`` where the config sets a sampler
    :func:`decode_batch` does not apply (then ``model.generate`` samples)."""
    config = model.generation_config
    if any(getattr(config, name, None) not in (None, neutral) for name, neutral in OTHER_SAMPLERS.items()):
        return None
    return int(getattr(config, "top_k", None) or 0)

#: Texts after which an answer is complete: generation stops there for that row, even if the
#: model would ramble on. (Label-only answers end at end-of-turn: "harmful" is inside "unharmful".)
LABEL_STOPS = tuple(f"{field}: {label}" for field in ("Harm", "harm") for label in ("harmful", "unharmful", "safe"))


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    conversations: Sequence[ModelInput],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    stop_strings: Sequence[str] = (),
    desc: str = "generating",
) -> Generation:
    """Generate for every conversation (or plain-text prompt), batched by similar length with left padding and KV cache.

    Rows are taken in order of prompt length, so a batch wastes little on padding, then put back
    in input order. With ``num_return_sequences=k`` the outputs of row i are at ``i*k … i*k+k-1``.
    A row stops at end-of-turn or at any of ``stop_strings``. Where the kit decodes itself
    (:func:`plain_greedy`, a sampler it applies) the batch is continuous (:func:`decode_batch`:
    a finished row's place goes to the next waiting prompt); otherwise ``model.generate`` runs
    fixed batches (:func:`length_batches`) with transformers' stop-string criteria.
    On a CUDA out-of-memory error the batch is halved and generation continues (said each time).
    """
    encoded = encode_inputs(tokenizer, conversations)
    k = num_return_sequences
    reader = LabelProbability(tokenizer)
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id
    top_k = sampling_top_k(model)
    texts, counts = [""] * (len(encoded) * k), [0] * (len(encoded) * k)
    p_harmful: list[float | None] = [None] * (len(encoded) * k)
    bar = progress_bar(len(encoded), desc=desc, unit="prompt")

    def finished(prompt: int, answers: list[list[int]]) -> None:
        """Prompt ``prompt``'s answers (new tokens) as text, token count and P(harmful), as soon as they are done."""
        for sample, seq in enumerate(answers):
            used = _until_eos(seq, [*eos_ids, pad_id])
            texts[prompt * k + sample] = tokenizer.decode(used, skip_special_tokens=True).strip()
            counts[prompt * k + sample] = len(used) + (1 if len(used) < len(seq) else 0)
            p_harmful[prompt * k + sample] = reader.read(prompt * k + sample, used)
        bar.update(1)

    start = time.perf_counter()
    if plain_greedy(model) and (k == 1 and not do_sample or do_sample and top_k is not None):
        while True:
            reader.start(max_new_tokens)
            try:
                with inference_autocast(model):
                    decode_batch(model, tokenizer, encoded, pad_id, eos_ids, stop_strings, max_new_tokens, reader, k=k,
                                 temperature=temperature if do_sample else None, top_k=top_k or 0,
                                 batch_size=batch_size, max_tokens=GENERATE_BATCH_TOKENS, finished=finished)
                break
            except torch.cuda.OutOfMemoryError:
                batch_size = _halved(batch_size)
                bar.reset()
    else:
        reader.start(max_new_tokens)
        _generate_batches(model, encoded, pad_id, eos_ids, _stop_criteria(tokenizer, stop_strings), max_new_tokens,
                          do_sample, temperature, k, reader, batch_size, finished)
    bar.close()
    seconds = time.perf_counter() - start
    return Generation(texts=texts, new_tokens=counts, seconds=seconds, p_harmful=p_harmful if reader.usable else None)


def _halved(batch_size: int) -> int:
    """Half of ``batch_size`` after a CUDA out-of-memory error (said); at one row the error is raised again."""
    if batch_size == 1:
        raise
    torch.cuda.empty_cache()
    warnings.warn(f"CUDA out of memory at batch size {batch_size}: halving the batch and continuing", stacklevel=3)
    return batch_size // 2


def _generate_batches(model, encoded, pad_id, eos_ids, stopping, max_new_tokens, do_sample, temperature, k,
                      reader: "LabelProbability", batch_size: int,
                      finished: Callable[[int, list[list[int]]], None]) -> None:
    """``model.generate`` over fixed length-sorted batches; ``finished(i, answers)`` hears each prompt's ``k`` answers."""
    pending = length_batches([len(x) for x in encoded], batch_size, GENERATE_BATCH_TOKENS)
    while pending:
        batch = pending.pop(0)
        rows = torch.tensor([i * k + s for i in batch for s in range(k)])
        try:
            with inference_autocast(model):
                out = _generate_batch(model, [encoded[i] for i in batch], pad_id, eos_ids, stopping, max_new_tokens,
                                      do_sample, temperature, k, reader.processor(rows))
        except torch.cuda.OutOfMemoryError:
            half = _halved(len(batch))
            pending[:0] = [batch[:half], batch[half:]]
            continue
        for j, i in enumerate(batch):
            finished(i, out[j * k:(j + 1) * k])


class LabelProbability:
    """P(harmful) of a generated answer, read at the decoding step that wrote its label word.

    Why: a generated label is a hard 0/1; the logits of the step that wrote it rank prompts, so
    intent, reasoning, DPO and GRPO runs get AUROC / AUPRC and PR curves like a label-only run.

    Which words: every label word the parser accepts, by the parser's own rule
    (:func:`aims_kit.datasets.formats.label_word_ids`: the synonyms, in lower, Capitalised and
    UPPER case, with and without a leading space; ambiguous first tokens counted for neither).
    At every step a logits processor keeps the logits of those first tokens (a few dozen
    numbers a row, not the vocabulary). After decoding, the label's character offset
    (:func:`aims_kit.datasets.formats.label_offset`) is mapped to its token, and P(harmful) = the
    probability mass of the harmful words' first tokens over the mass of both classes' at that
    step (:func:`harmful_share`). A row with no parsed label has no P (``None``).

    **P agrees with the label.** P(harmful) >= 0.5 exactly when the parsed label is harmful. The
    mass comparison normally says so by itself (the written token is the step's argmax and
    belongs to its class), but not always: several forms of the other class can together
    outweigh the written one, a sampled token need not be the likeliest, and a label can begin
    inside a token of neither list (":harmful", an ambiguous "un"). Then P is put on the
    label's side of the boundary, at the boundary: 0.5 for a harmful label, the largest float
    below 0.5 for a safe one (:func:`agreeing`). Such a row is one the model wrote with no
    margin, and ranks as that. Nothing about decoding changes: the processor returns the
    logits as given.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        harmful, safe = formats.label_word_ids(tokenizer)
        #: Column order of the kept logits: the harmful ids, then the safe ids.
        self.ids = [*harmful, *safe]
        self.n_harmful = len(harmful)
        self.usable = bool(harmful) and bool(safe)
        #: Each output still unread: its kept logits, ``[token index, id]`` (NaN until written).
        self.kept: dict[int, torch.Tensor] = {}
        self.max_new_tokens = 0

    def start(self, max_new_tokens: int) -> None:
        """A fresh ``generate`` call, whose answers have up to ``max_new_tokens`` tokens."""
        self.kept, self.max_new_tokens = {}, max_new_tokens

    def keep(self, rows: torch.Tensor, tokens: torch.Tensor, scores: torch.Tensor) -> None:
        """The label words' logits of one decoding step: row j of ``scores`` is output ``rows[j]`` writing its token ``tokens[j]``.

        Kept per output until :meth:`read` takes them, so memory follows the answers being
        written, not every answer of a call at its whole budget.
        """
        if not self.usable:
            return
        values = scores[:, torch.tensor(self.ids, device=scores.device)].float().cpu()
        for value, row, token in zip(values, rows.tolist(), tokens.tolist()):
            if row not in self.kept:
                self.kept[row] = torch.full((self.max_new_tokens, len(self.ids)), float("nan"))
            self.kept[row][token] = value

    def processor(self, rows: torch.Tensor) -> "_KeepLabelLogits | None":
        """A logits processor for one ``model.generate`` batch whose j-th sequence is output ``rows[j]`` (``None``: unusable)."""
        return _KeepLabelLogits(self, rows) if self.usable else None

    def read(self, row: int, used: list[int]) -> float | None:
        """P(harmful) of output ``row``, whose new tokens up to end-of-turn are ``used`` (``None``: no label); read once."""
        kept = self.kept.pop(row, None)
        if kept is None:
            return None
        text = self.tokenizer.decode(used, skip_special_tokens=True)
        offset = formats.label_offset(text)
        label = formats.parse_output(text).label
        if offset is None or label is None:
            return None
        step = self._token_at(used, offset)
        if step >= len(kept):
            return None
        return agreeing(float(harmful_share(kept[step], self.n_harmful)), label)

    def _token_at(self, used: list[int], offset: int) -> int:
        """The index of the token holding character ``offset`` of the decoded text (:func:`token_index_at`)."""
        return token_index_at(self.tokenizer, used, offset)


def harmful_share(kept: torch.Tensor, n_harmful: int) -> torch.Tensor:
    """P(harmful) from logits of the label words' first tokens, harmful ids first (last dimension):
    the harmful ids' probability mass over both classes' (a softmax over the kept logits, summed)."""
    kept = kept.float()
    return (kept[..., :n_harmful].logsumexp(-1) - kept.logsumexp(-1)).exp()


#: The largest P(harmful) a ``safe`` label can carry (the boundary's safe side).
BELOW_HALF = math.nextafter(0.5, 0.0)


def agreeing(p: float, label: formats.Label) -> float:
    """``p`` put on ``label``'s side of 0.5 (at the boundary where it was not): P >= 0.5 iff the label is harmful."""
    return max(p, 0.5) if label == "harmful" else min(p, BELOW_HALF)


class _KeepLabelLogits(LogitsProcessor):
    """Hands each ``model.generate`` step's logits to a :class:`LabelProbability`, and returns the logits unchanged."""

    def __init__(self, reader: LabelProbability, rows: torch.Tensor):
        self.reader, self.rows, self.step = reader, rows, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.reader.keep(self.rows, torch.full_like(self.rows, self.step), scores)
        self.step += 1
        return scores


#: Generation-config settings that change which token greedy decoding picks; a model that sets
#: one decodes through ``model.generate``, which applies them.
ARGMAX_CHANGING = ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids", "suppress_tokens",
                   "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id", "min_new_tokens", "min_length",
                   "sequence_bias", "encoder_repetition_penalty")


def plain_greedy(model) -> bool:
    """Whether greedy decoding of ``model`` is the argmax of its logits at every step (:func:`decode_batch` applies)."""
    config = model.generation_config
    neutral = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0, "min_length": 0}
    return all(getattr(config, name, None) in (None, neutral.get(name)) for name in ARGMAX_CHANGING)


#: Shortest common prefix worth its own forward pass: below it the batch runs as one left-padded pass.
MIN_SHARED_PREFIX = 8


def shared_prefix_length(ids: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row of ``ids`` shares, leaving each row at least one token of its own."""
    first, shortest = ids[0], min(len(x) for x in ids)
    length = 0
    while length < shortest - 1 and all(x[length] == first[length] for x in ids):
        length += 1
    return length


def left_padded(ids: Sequence[Sequence[int]], pad_id: int, device, at_least: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids as one batch padded on the left, every row by ``at_least`` pads or more, and its attention mask (0 on the pads)."""
    width = max(len(x) for x in ids) + at_least
    input_ids = torch.tensor([[pad_id] * (width - len(x)) + list(x) for x in ids], device=device)
    attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    return input_ids, attention


def prefill(model, ids: list[list[int]], pad_id: int, cache, pad_at_least: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The prompts' forward pass into ``cache``; returns the last position's logits, the attention mask and the positions.

    Why: every prompt a classifier reads starts with the same chat-template system turn and
    instruction: on AIMS test 27 of a label-only prompt's 73 tokens on average, 41 of 87 for
    intent → label, 57 of 103 for a reasoning student with intent, and most of a short
    benchmark prompt. The prompt pass is about half of CPU evaluation's time, and it is
    arithmetic-bound (perf/bench_inference.py), so the rows' common prefix runs once, for one
    row, and its cache is copied to every row. Each row's own tokens follow, padded on the
    left of that part (``[prefix, pad…, own tokens]``, pads masked; ``pad_at_least`` pads in every
    row, see :meth:`_Decoding.prefilled`), and positions count on from
    the prefix as in a left-padded batch, so each row's answer is the one it gets alone, up to
    the last bits of the arithmetic (label agreement is measured by perf/bench_inference.py).
    A batch of one row, or one whose prefix is shorter than :data:`MIN_SHARED_PREFIX`, is one
    left-padded pass.
    """
    device = model.device
    shared = shared_prefix_length(ids) if len(ids) > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    else:
        model(input_ids=torch.tensor([ids[0][:shared]], device=device), cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(len(ids))
    input_ids, own_attention = left_padded([x[shared:] for x in ids], pad_id, device, pad_at_least)
    attention = torch.cat([own_attention.new_ones((len(ids), shared)), own_attention], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1, :]
    return logits, attention, positions


def decode_batch(model, tokenizer, ids: list[list[int]], pad_id: int, eos_ids: list[int], stop_strings: Sequence[str],
                 max_new_tokens: int, reader: LabelProbability | None = None, *, k: int = 1,
                 temperature: float | None = None, top_k: int = 0, batch_size: int | None = None,
                 max_tokens: int | None = None,
                 finished: Callable[[int, list[list[int]]], None] | None = None) -> list[list[int]]:
    """Decode every prompt of ``ids``, greedy (``temperature`` None) or ``k`` samples per prompt, as one continuous
    batch. Returns each output's new tokens (prompt i's samples at ``i*k … i*k+k-1``), ending with its end-of-turn
    token where it wrote one; ``finished(i, answers)`` hears of each prompt as its last sample ends, and
    ``reader`` keeps the label words' logits of every step.

    Why drop rows: ``model.generate`` keeps a finished row in the batch to the end, so every later
    step multiplies it by every weight; an intent answer ends after 15-40 tokens of a 48-token
    budget and a label-only one after a few, so the batch's tail steps ran mostly on rows already
    done. Here a row leaves at end-of-turn, at its own ``max_new_tokens``, or once its new text
    holds one of ``stop_strings``.

    Why refill (continuous batching): a decoding step reads every weight whatever its rows, so on a
    2-core EPYC a step cost 34 ms at 1 row and 89 at 64, and with rows leaving as they finish the
    reasoning students' steps averaged 19 rows (docs/measurements.md). Prompts wait shortest first;
    the batch admits them up to ``batch_size`` prompts and ``max_tokens`` padded prompt tokens
    (:func:`length_batches`' rule, on the batch as it stands; ``None``: all at once), and once a
    quarter of its room is free (:data:`REFILL`) the next waiting prompts' pass runs and they join
    the rows still writing (:meth:`_Decoding.joined`).

    Why share the prompt: DPO pair mining and GRPO rollouts draw ``k`` answers per prompt, and
    ``model.generate(num_return_sequences=k)`` runs k copies of each prompt through the whole
    prompt pass. Here the prompts' pass runs once (:func:`prefill`, which also runs its common
    prefix once) and its cache is repeated k times for decoding.

    Same answers: greedy decoding writes what ``model.generate`` writes, up to padding-shaped
    arithmetic in the last bits (label agreement: perf/bench_inference.py). Sampling draws from
    ``model.generate``'s distribution: float32 logits divided by ``temperature``, then the
    ``top_k`` largest kept (0: all), softmax, one multinomial draw per row per step; while no row
    has finished, the same seed draws the same tokens (tests/test_shared_sampling.py).
    """
    waiting = deque(sorted(range(len(ids)), key=lambda i: len(ids[i])))
    written: list[list[int]] = [[] for _ in range(len(ids) * k)]
    unfinished = [k] * len(ids)
    eos = torch.tensor(eos_ids, device=model.device)
    longest_stop = max((len(tokenizer(stop, add_special_tokens=False)["input_ids"]) for stop in stop_strings), default=0) + 2
    batch: _Decoding | None = None
    while True:
        group = _admitted(waiting, ids, 0 if batch is None else len(batch.rows), k, batch_size or len(ids), max_tokens)
        if group:
            joining = _Decoding.prefilled(model, [ids[i] for i in group], group, k, pad_id, max_new_tokens)
            batch = joining if batch is None else batch.joined(joining, max_new_tokens)
        if batch is None:
            return written
        rows = batch.rows.tolist()
        if reader is not None:
            reader.keep(batch.rows, torch.tensor([len(written[row]) for row in rows]), batch.logits)
        tokens = _greedy(batch.logits) if temperature is None else _sample(batch.logits, temperature, top_k)
        done = torch.isin(tokens, eos).tolist()
        for j, (row, token) in enumerate(zip(rows, tokens.tolist())):
            written[row].append(token)
            done[j] = done[j] or len(written[row]) == max_new_tokens or bool(stop_strings) and any(
                stop in tokenizer.decode(written[row][-longest_stop:], skip_special_tokens=True) for stop in stop_strings)
            if done[j]:
                unfinished[row // k] -= 1
                if unfinished[row // k] == 0 and finished is not None:
                    finished(row // k, written[row // k * k:(row // k + 1) * k])
        batch = batch.advanced(model, tokens, torch.tensor(done, device=tokens.device))


#: How much of a batch's room must be free before waiting prompts join it: joining copies the rows'
#: caches into a new one, so it waits for a group worth that copy rather than refilling row by row.
#: (1.0: only an empty batch takes prompts, fixed batches as ``perf/bench_inference.py`` compares.)
REFILL = 0.25


def _admitted(waiting: deque, ids: list[list[int]], rows: int, k: int, batch_size: int, max_tokens: int | None) -> list[int]:
    """The waiting prompts (shortest first) to start decoding beside ``rows`` rows now, taken off ``waiting``.

    Room: :func:`batch_room` at the newest (longest) prompt's length, ``k`` rows a prompt; beside
    rows still writing, waiting prompts join only once
    :data:`REFILL` of the room is free.
    """
    group: list[int] = []
    while waiting:
        length = len(ids[waiting[0]])
        room = k * batch_room(length, batch_size, max_tokens)
        if rows and not group and room - rows < max(k, int(REFILL * room)):
            break
        if rows + k * (len(group) + 1) > room:
            break
        group.append(waiting.popleft())
    return sorted(group)  # rows in input order: all prompts at once sample as model.generate's batch does


@dataclass
class _Decoding:
    """The rows being decoded: one KV cache, their next-token logits, attention mask (0 on pads), last
    positions, and which output each row writes."""

    cache: ReservedCache
    logits: torch.Tensor
    attention: torch.Tensor
    positions: torch.Tensor
    rows: torch.Tensor

    @classmethod
    def prefilled(cls, model, ids: list[list[int]], prompts: list[int], k: int, pad_id: int, max_new_tokens: int) -> "_Decoding":
        """Prompts ``prompts`` (token ids ``ids``) after their pass (:func:`prefill`), each repeated for its ``k`` samples.

        The cache reserves the longest prompt plus ``max_new_tokens`` so every step writes in place
        (:class:`aims_kit.inference.kv_cache.ReservedCache`) instead of copying the cache to grow it.

        Every row gets one masked pad at least, because transformers drops an attention mask of all
        ones at one query token, and SDPA then runs grouped-query attention through ``enable_gqa``,
        which on a CPU in bf16 is slow: a 64-row SmolLM2 step at 100 keys took 222 ms without a
        mask and 126 ms with one masked column (2-core AMD EPYC; with a mask transformers packs each
        key head's query heads into one query instead). A masked key adds nothing to a softmax.
        """
        cache = ReservedCache(max(len(x) for x in ids) + 1 + max_new_tokens)
        logits, attention, positions = prefill(model, ids, pad_id, cache, pad_at_least=1)
        positions = positions[:, -1:]
        if k > 1:
            cache.batch_repeat_interleave(k)
            logits, attention, positions = (t.repeat_interleave(k, dim=0) for t in (logits, attention, positions))
        rows = torch.tensor([p * k + s for p in prompts for s in range(k)], device=logits.device)
        return cls(cache, logits, attention, positions, rows)

    def advanced(self, model, tokens: torch.Tensor, done: torch.Tensor) -> "_Decoding | None":
        """The rows not ``done`` after one step that feeds them ``tokens`` (``None`` when every row is done).

        A finished row leaves with its cache, so the remaining steps run on the rows still writing.
        """
        if bool(done.all()):
            return None
        if bool(done.any()):
            still = (~done).nonzero().squeeze(1)
            self.cache.batch_select_indices(still)
            self.rows, tokens, self.attention, self.positions = self.rows[still], tokens[still], self.attention[still], self.positions[still]
        self.attention = torch.cat([self.attention, self.attention.new_ones((len(self.rows), 1))], dim=1)
        self.positions = self.positions + 1
        self.logits = model(input_ids=tokens[:, None], attention_mask=self.attention, position_ids=self.positions,
                            cache=self.cache, use_cache=True).logits[:, -1, :]
        return self

    def joined(self, other: "_Decoding", room: int) -> "_Decoding":
        """These rows and ``other``'s in one batch, each row's keys right-aligned at the next step's column.

        Columns that are padding in every row here are dropped (rows that left took their tokens with
        them) but one, so that every row keeps a masked pad (:meth:`prefilled` says why); the
        narrower side is padded on the left with masked zeros, and the cache keeps ``room`` free
        positions. Each row keeps its own positions, so it attends to what it attended to before,
        up to padding-shaped arithmetic.
        """
        columns = self.attention.any(0).nonzero().squeeze(1)
        width = max(len(columns) + 1, other.attention.shape[1])
        attention = self.attention.new_zeros((len(self.rows) + len(other.rows), width))
        attention[: len(self.rows), width - len(columns):] = self.attention[:, columns]
        attention[len(self.rows):, width - other.attention.shape[1]:] = other.attention
        self.cache.join(other.cache, columns, width, room)
        return _Decoding(self.cache, torch.cat([self.logits, other.logits]), attention,
                         torch.cat([self.positions, other.positions]), torch.cat([self.rows, other.rows]))


def _greedy(logits: torch.Tensor) -> torch.Tensor:
    """Each row's likeliest token, the first on a tie, as ``model.generate`` picks it from float32 logits.

    Why float32: torch's CPU argmax over bf16 logits is not vectorised; at 36 rows x 49,152 words
    it took 3.2 ms against 0.8 ms for casting and taking it in float32 (the same values, so the
    same token), 3.5% of a decoding step (2-core AMD EPYC).
    """
    return logits.float().argmax(-1)


def _sample(logits: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """One token per row, as ``model.generate`` samples: temperature, then top-k, then softmax and a multinomial draw."""
    scores = logits.float() / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k).values[..., -1, None]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)


def _generate_batch(model, ids, pad_id, eos_ids, stopping, max_new_tokens, do_sample, temperature, k, keep_logits=None) -> list[list[int]]:
    """One left-padded batch through ``model.generate``; returns the new tokens of each sequence.

    ``keep_logits`` (a logits processor that returns its scores unchanged) sees every step's logits.
    """
    input_ids, attention = left_padded(ids, pad_id, model.device)
    width = input_ids.shape[1]
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=None,
        top_k=None,
        num_return_sequences=k,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        stopping_criteria=stopping,
        logits_processor=LogitsProcessorList([keep_logits]) if keep_logits else None,
        use_cache=True,
    )
    return out[:, width:].tolist()


def _stop_criteria(tokenizer, stop_strings: Sequence[str]):
    if not stop_strings:
        return None
    from transformers import StoppingCriteriaList, StopStringCriteria

    return StoppingCriteriaList([StopStringCriteria(tokenizer, list(stop_strings))])


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _until_eos(seq: list[int], eos_ids: list[int]) -> list[int]:
    for position, token in enumerate(seq):
        if token in eos_ids:
            return seq[:position]
    return seq


#: The longest prompt plus answer evaluation sends, in tokens, whatever the model's context: long
#: benchmark prompts are cut (counted) to fit it, and a vLLM engine is sized to it.
PROMPT_TOKEN_CAP = 4096


def token_index_at(tokenizer, token_ids: Sequence[int], offset: int) -> int:
    """The index of the token holding character ``offset`` of ``token_ids``' decoded text.

    Decoded prefixes only grow, so a bisection over prefix lengths finds the smallest prefix whose
    text reaches past ``offset``; used to find the decoding step that wrote a label.
    """
    low, high = 1, len(token_ids)
    while low < high:
        middle = (low + high) // 2
        if len(tokenizer.decode(list(token_ids[:middle]), skip_special_tokens=True)) > offset:
            high = middle
        else:
            low = middle + 1
    return low - 1


#: Tokens kept for the instruction and chat tokens around a prompt when a format's own are not counted.
TEMPLATE_TOKENS = 64


def max_prompt_tokens(model, max_new_tokens: int, cap: int = PROMPT_TOKEN_CAP, room: int = TEMPLATE_TOKENS) -> int:
    """How many prompt tokens fit beside the answer and ``room`` template tokens in the model's context (at most ``cap``).

    ``model`` is a loaded model, or the context length itself (a served folder's, with no weights here).
    """
    context = model if isinstance(model, int) else getattr(model.config, "max_position_embeddings", None)
    context = context or cap
    return max(16, min(cap, context) - max_new_tokens - room)


def template_tokens(tokenizer, prompt_format: PromptFormat, condition: formats.Condition) -> int:
    """Tokens to keep for what a format puts around a prompt.

    The kit's format keeps :data:`TEMPLATE_TOKENS` (its instruction and chat tokens; every trained
    run's records were cut with it). Another format's own tokens are counted, at least that many:
    the paper's student preamble and GRPO system prompt take hundreds, and a cut prompt must leave
    room for them.
    """
    if prompt_format.name == prompt_formats.KIT:
        return TEMPLATE_TOKENS
    rendered = encode_inputs(tokenizer, [prompt_format.render("", condition)])[0]
    return max(TEMPLATE_TOKENS, len(rendered) + 8)


def truncate_prompts(tokenizer, prompts: list[str], max_tokens: int) -> tuple[list[str], int]:
    """Cut prompts longer than ``max_tokens`` tokens (keeping the start); returns them and how many were cut.

    Truncation is explicit and counted (``truncated_prompts`` in every record), never silent.
    """
    out, cut = [], 0
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            prompt, cut = tokenizer.decode(ids[:max_tokens]), cut + 1
        out.append(prompt)
    return out, cut


def score_labels(model, tokenizer, prompts: Sequence[str], *, batch_size: int = 64) -> tuple[list[float], float]:
    """P(harmful) of a label-only model for each prompt (see :func:`score_conversations`); (probabilities, seconds)."""
    gen = score_conversations(model, tokenizer, [formats.prompt_messages(p, "label_only") for p in prompts], batch_size=batch_size)
    return gen.p_harmful, gen.seconds


@torch.inference_mode()
def score_conversations(model, tokenizer, conversations: Sequence[ModelInput], *, batch_size: int = 64, desc: str = "") -> Generation:
    """A label-only model's answers from one forward pass per prompt, no decoding.

    The answer's first token decides, by the parser's own words: P(harmful) = the probability
    mass of the first tokens of every label word the parser reads as harmful over the mass of
    both classes' (:func:`aims_kit.datasets.formats.label_word_ids`: synonyms such as unsafe,
    benign, unharmful, in any case, with or without a leading space; :func:`harmful_share`),
    and the label is ``harmful`` exactly when P >= 0.5, so label and P never disagree. A
    label-only answer is that one word, so this gives greedy generation's label wherever one
    class holds most of the label words' mass (checked by perf/bench_inference.py) at the cost
    of the prompt alone, and the probability feeds threshold sweeps and PR curves. Only the
    last position's logits are computed, and the prompts' shared prefix once (:func:`prefill`).
    The logits are read at the end of :func:`encode_inputs`' prompt (after a thinking template's
    forced empty ``<think></think>`` block; after a plain-text prompt's last token), where the answer starts. Raises ``ValueError`` when
    no first token tells "harmful" from "safe" (then only generation can tell them apart).
    """
    from transformers import DynamicCache

    harmful, safe = formats.label_word_ids(tokenizer)
    if not harmful or not safe:
        raise ValueError("this tokenizer starts 'harmful' and 'safe' with the same token; use generation")
    ids = torch.tensor([*harmful, *safe])
    encoded = encode_inputs(tokenizer, conversations)
    probs = [0.0] * len(encoded)
    pad_id = tokenizer.pad_token_id
    bar = progress_bar(len(encoded), desc=desc, unit="prompt")
    start = time.perf_counter()
    for batch in length_batches([len(x) for x in encoded], batch_size):
        with inference_autocast(model):
            logits, _, _ = prefill(model, [encoded[j] for j in batch], pad_id, DynamicCache())
        shares = harmful_share(logits[:, ids.to(logits.device)], len(harmful))
        for j, p in zip(batch, shares.tolist()):
            probs[j] = p
        bar.update(len(batch))
    bar.close()
    return Generation(
        texts=["harmful" if p >= 0.5 else "safe" for p in probs], new_tokens=[0] * len(probs),
        seconds=time.perf_counter() - start, p_harmful=probs, method="scored",
    )


def classifier_inputs(model, tokenizer, prompts: list[str], condition: formats.Condition, max_new_tokens: int,
                      prompt_format: PromptFormat | None = None) -> tuple[list[str], list[ModelInput], int]:
    """The prompts as the classifier sees them, rendered in ``prompt_format``, and how many were cut.

    ``prompt_format`` (default: the kit's chat + instruction) renders each prompt as a chat
    conversation or plain text (:class:`aims_kit.datasets.prompt_formats.PromptFormat`). Long
    prompts are cut to fit the context beside the answer and the format's own tokens (counted,
    never silent). A served model (``model`` None) is cut the same way when its folder's tokenizer
    is known (:func:`aims_kit.inference.engines.served_tokenizer` sets ``model_max_length`` to its
    context); a remote one gets prompts as they are: its server owns its context.
    """
    prompt_format = prompt_format or PromptFormat()
    prompt_format.check(condition)
    n_truncated = 0
    if tokenizer is not None:
        context = model if model is not None else tokenizer.model_max_length
        room = template_tokens(tokenizer, prompt_format, condition)
        prompts, n_truncated = truncate_prompts(tokenizer, prompts, max_prompt_tokens(context, max_new_tokens, room=room))
    return prompts, [prompt_format.render(p, condition) for p in prompts], n_truncated


@dataclass
class TransformersEngine:
    """A local model through transformers (an :class:`aims_kit.inference.engines.Engine`).

    Batched greedy decoding (:func:`generate`), and label-only answers read from one forward
    pass (:func:`score_conversations`) where the tokenizer starts the two labels differently.
    """

    model: object
    tokenizer: object
    batch_size: int = 32
    backend: ClassVar[str] = "transformers"

    def generate(self, conversations: Sequence[ModelInput], *, max_new_tokens: int, stop_strings: Sequence[str] = (),
                 desc: str = "") -> Generation:
        return generate(self.model, self.tokenizer, conversations, max_new_tokens=max_new_tokens,
                        batch_size=self.batch_size, stop_strings=stop_strings, desc=desc)

    def score(self, conversations: Sequence[ModelInput], *, desc: str = "") -> Generation | None:
        try:
            return score_conversations(self.model, self.tokenizer, conversations, batch_size=self.batch_size, desc=desc)
        except ValueError:  # the tokenizer cannot tell the labels apart by their first token
            return None

    def device_info(self) -> dict:
        return device_info(self.model)


def generate_answers(
    engine: Engine, conversations: Sequence[ModelInput], *, condition: formats.Condition, max_new_tokens: int,
    desc: str = "classifying",
) -> Generation:
    """Greedy answers through ``engine``, stopping at the label.

    The one generation path of every classification (evaluation, :class:`aims_kit.Classifier`,
    the playground), so a verdict never depends on which of them asked. A label-only answer is
    scored in one forward pass where the engine can (``Engine.score``) instead of decoded.
    """
    if condition == "label_only":
        scored = engine.score(conversations, desc=desc)
        if scored is not None:
            return scored
    stops = () if condition == "label_only" else LABEL_STOPS
    return engine.generate(conversations, max_new_tokens=max_new_tokens, stop_strings=stops, desc=desc)
