"""``python -m aims_kit doctor``: what this machine computes in, what it can run, and whether a profile fits.

Read before a first GPU run: the device and its compute capability, the dtype the device policy
picks (:func:`aims_kit.models.precision.compute_dtype`), memory, whether bitsandbytes and vLLM
are importable, the profile the kit recommends, and the estimated peak memory of every regime
of the chosen profile (:mod:`aims_kit.models.memory`). A profile that cannot fit is a failure
with the regime, the estimate and what to change.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch

from aims_kit.core.profiles import PROFILES
from aims_kit.models import memory
from aims_kit.models.precision import (bf16_speedup, compute_dtype, cpu_has_fast_bf16, cpu_name, cuda_capability, dtype_name,
                                       has_cuda, matmul_peak)


@dataclass
class Finding:
    """What the doctor says: lines to print, and whether the chosen profile fits."""

    lines: list[str]
    fits: bool


def gpu_memory_gib() -> float | None:
    """This process's GPU's total memory in GiB (``None`` without CUDA)."""
    return torch.cuda.get_device_properties(0).total_memory / memory.GIB if has_cuda() else None


def recommend(gpu_gib: float | None) -> str:
    """The largest profile whose every regime fits: ``paper``, ``gpu-small``, else ``cpu`` (``smoke`` on a too-small GPU)."""
    if gpu_gib is None:
        return "cpu"
    for name in ("paper", "gpu-small"):
        if all(parts["total"] <= gpu_gib for parts in memory.estimate(PROFILES[name], gpu_gib).values()):
            return name
    return "smoke"


def cpu_bf16_note() -> str:
    """What the policy found about bf16 on this CPU, in words (AMX; AVX512-BF16 with its measured speed-up; neither)."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX: bf16 matmuls run natively"
    if torch.cpu._is_avx512_bf16_supported():
        speedup = bf16_speedup()
        verdict = "so the kit computes in bf16" if cpu_has_fast_bf16() else "slower than fp32, so the kit computes in fp32"
        return f"AVX512-BF16 without AMX: bf16 matmuls measured {speedup:.2f}x fp32 here, {verdict}"
    return "no native bf16"


def machine() -> str:
    """The machine in one line: the GPU and its compute capability, or the CPU, its cores and memory and what it does with bf16.

    Written into a run's ``status.json`` (so a results page names the machine its times came from)
    and printed by the doctor.
    """
    if has_cuda():
        major, minor = cuda_capability()
        return f"CUDA GPU {torch.cuda.get_device_name()} (compute capability {major}.{minor}), {gpu_memory_gib():.1f} GiB"
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return f"CPU {cpu_name()}, {os.cpu_count()} cores, {pages * size / memory.GIB:.0f} GiB RAM, {cpu_bf16_note()}"


def machine_speed() -> float | None:
    """This CPU's matmul GFLOP/s in the dtype the kit computes in now (about half a second), ``None`` on a GPU machine.

    A run takes it before each notebook (``status.json``, the results page's times), so two runs'
    times can be read against how fast the shared machine was during each. Not on a GPU: the
    runner's process would hold a CUDA context, and its memory, for the whole run.
    """
    if has_cuda():
        return None
    return round(matmul_peak(compute_dtype("cpu"), repeats=4))


def _device_lines() -> list[str]:
    device = machine()
    found = {name: importlib.util.find_spec(name) is not None for name in ("bitsandbytes", "vllm")}
    return [
        f"device:        {device}",
        f"computes in:   {dtype_name(compute_dtype())} (the device policy; AIMS_KIT_PRECISION overrides it)",
        f"bitsandbytes:  {'installed (4-bit QLoRA)' if found['bitsandbytes'] else 'missing: 4-bit QLoRA cannot load'}",
        f"vllm:          {'installed' if found['vllm'] else 'not installed'}"
        + ("" if has_cuda() else " (CUDA only; evaluation uses transformers here)"),
    ]


def diagnose(profile: str | None = None, gpu_gib: float | None = None) -> Finding:
    """The doctor's report; ``gpu_gib`` stands in for this machine's GPU (to plan for another card)."""
    gpu_gib = gpu_gib if gpu_gib is not None else gpu_memory_gib()
    chosen = profile or recommend(gpu_gib)
    if chosen not in PROFILES:
        raise KeyError(f"unknown profile {chosen!r}; choose one of {', '.join(PROFILES)}")
    lines = _device_lines() + [f"recommended:   profile {recommend(gpu_gib)!r}" + (f" (checking {chosen!r})" if chosen != recommend(gpu_gib) else "")]
    if gpu_gib is None:
        lines.append("memory:        no GPU here: pass --gpu-memory GIB to check a profile against a card")
        return Finding(lines, True)
    estimates = memory.estimate(PROFILES[chosen], gpu_gib)
    lines.append(f"peak GPU memory of profile {chosen!r} ({PROFILES[chosen]['model']}) on {gpu_gib:.0f} GiB, estimated:")
    over = []
    for regime, parts in estimates.items():
        detail = ", ".join(f"{part} {gib:.1f}" for part, gib in parts.items() if part != "total")
        mark = "ok " if parts["total"] <= gpu_gib else "TOO BIG"
        lines.append(f"  {mark:7} {regime:20} {parts['total']:6.1f} GiB  ({detail})")
        if parts["total"] > gpu_gib:
            over.append(regime)
    shape = memory.model_shape(PROFILES[chosen]["model"])
    engine_needs = (2 * shape.params + memory.kv_cache_bytes(shape, 1)) / memory.GIB
    share = PROFILES[chosen]["gpu_memory_utilization"] * gpu_gib
    if share < engine_needs:
        lines.append(f"  note: vLLM's share ({share:.1f} GiB) cannot hold the 16-bit model ({engine_needs:.1f} GiB): "
                     "evaluation falls back to transformers (or raise -p gpu_memory_utilization)")
    if over:
        lines.append(f"error: profile {chosen!r} does not fit {gpu_gib:.0f} GiB: {', '.join(over)} would run out of memory. "
                     f"Lower -p batch_size and raise -p gradient_accumulation_steps (same effective batch), "
                     f"or use profile {recommend(gpu_gib)!r}.")
    return Finding(lines, not over)
