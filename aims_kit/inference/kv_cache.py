"""A KV cache reserved for a batch's whole answer, written in place instead of concatenated.

Why: transformers' ``DynamicCache`` grows each layer's keys and values with ``torch.cat`` at
every decoding step, so step t copies the whole cache so far (every row, every layer) to add one
token: a cost that grows with the answer, paid on top of the step's matmuls.
:func:`aims_kit.inference.generation.decode_batch` knows before the first step how long a batch
can grow (its widest prompt plus the answer budget), so each layer reserves that much once and
each step writes its token into the next free slot. How much it pays depends on the machine's
memory bandwidth against its matmul speed: on a 2-core AMD EPYC (bf16) the copies were 0.6% of a
student's decoding step and the two caches timed within noise (docs/measurements.md). The cache
also lets rows join a batch mid-answer (:meth:`ReservedCache.join`), which continuous batching needs.

Same arithmetic: attention reads the filled part of the buffer (a view, no copy), the same keys
and values in the same order as ``DynamicCache`` holds, so answers do not change
(tests/test_kv_cache.py).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """One layer's keys and values in a buffer of ``capacity`` positions, filled from the left.

    ``keys`` / ``values`` are always the filled part (``[batch, heads, length, head_dim]``), as
    ``DynamicLayer`` keeps them, so everything that reads a ``DynamicLayer`` reads this one. A
    batch that outgrows its reservation gets a larger buffer (one copy), never an error.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Buffers of ``capacity`` positions shaped like the first states (:meth:`update` grows them if need be)."""
        self.device = key_states.device
        batch, heads, _, dim = key_states.shape
        self._key_buffer = key_states.new_empty((batch, heads, self.capacity, dim))
        self._value_buffer = value_states.new_empty((batch, heads, self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self._key_buffer.shape[-2]:
            self._key_buffer, self._value_buffer = (_grown(b, end, self.length) for b in (self._key_buffer, self._value_buffer))
        self._key_buffer[:, :, self.length:end] = key_states
        self._value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length > 0:
            self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
            self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
            self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices`` (rows that finished leave the batch).

        Why ``index_select`` and not ``buffer[indices]``: the same rows copied, but advanced indexing
        walks the buffer element by element; at a reasoning student's 40 rows x 300 positions it took
        690 us a layer's keys against 140 (2-core AMD EPYC, bf16), and rows leave every few steps:
        8.6% of the student's evaluation went to it (docs/measurements.md).
        """
        if self.length > 0:
            self._key_buffer, self._value_buffer = (torch.index_select(b, 0, indices) for b in (self._key_buffer, self._value_buffer))
            self._expose()

    def join(self, other: "ReservedLayer", columns: torch.Tensor, width: int, room: int) -> None:
        """Rows of ``other`` appended below these, both right-aligned in ``width`` positions with ``room`` to spare.

        Only ``columns`` of this layer are kept; positions nobody fills are zeros (the attention
        mask hides them, and zeros, unlike an empty buffer's leftovers, cannot turn a masked score into NaN).
        """
        joined = []
        for mine, theirs in ((self._key_buffer, other.keys), (self._value_buffer, other.values)):
            rows = mine.shape[0]
            buffer = mine.new_empty((rows + theirs.shape[0], mine.shape[1], width + room, mine.shape[-1]))
            buffer[:, :, :width].zero_()
            buffer[:rows, :, width - len(columns):width] = torch.index_select(mine, 2, columns)
            buffer[rows:, :, width - theirs.shape[2]:width] = theirs
            joined.append(buffer)
        self._key_buffer, self._value_buffer = joined
        self.length = width
        self._expose()

    def reset(self) -> None:
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a reserved cache is written once per decoding step and never cropped")

    def _expose(self) -> None:
        self.keys = self._key_buffer[:, :, : self.length]
        self.values = self._value_buffer[:, :, : self.length]


def _grown(buffer: torch.Tensor, needed: int, filled: int) -> torch.Tensor:
    """A buffer with room for ``needed`` positions (twice what it had, at least), holding the first ``filled``."""
    batch, heads, capacity, dim = buffer.shape
    bigger = buffer.new_empty((batch, heads, max(needed, 2 * capacity), dim))
    bigger[:, :, :filled] = buffer[:, :, :filled]
    return bigger


class ReservedCache(Cache):
    """A cache whose every layer is a :class:`ReservedLayer` of ``capacity`` positions."""

    def __init__(self, capacity: int):
        super().__init__(layer_class_to_replicate=lambda: ReservedLayer(capacity))

    def join(self, other: "ReservedCache", columns: torch.Tensor, width: int, room: int) -> None:
        """``other``'s rows appended below these in every layer (:meth:`ReservedLayer.join`): continuous batching."""
        for mine, theirs in zip(self.layers, other.layers, strict=True):
            mine.join(theirs, columns, width, room)
