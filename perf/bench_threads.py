"""How much two torch processes on one box slow each other, with torch's default threads and with limited ones.

Runs a fixed CPU workload (forward and backward passes of a small MLP, the shape of LoRA training
on a small model: many small matrix products) alone and as two concurrent copies, once with the
threads torch picks by itself and once with the available cores split between the processes.
Prints the seconds and the ratio "two concurrent / one alone" for both: near 1 means the two
processes share the cores well, 10 or more means oversubscribed threads spin against each other.

    python perf/bench_threads.py              # about a minute on 2 cores
    python perf/bench_threads.py --steps 100  # shorter

Measure on an otherwise idle machine: another busy process makes every number meaningless.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from aims_kit.core.threads import THREAD_VARIABLES, available_cores


def workload(steps: int) -> float:
    """Seconds for ``steps`` forward + backward passes of a 4-layer MLP on a batch of 16."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.GELU()) for _ in range(4)])
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    batch = torch.randn(16, 256)

    def step() -> None:
        optimiser.zero_grad()
        model(batch).pow(2).mean().backward()
        optimiser.step()

    step()  # untimed: the thread pool and allocator start up on the first pass
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def run_copies(copies: int, threads: int | None, steps: int) -> float:
    """Wall seconds of the slowest of ``copies`` concurrent workers (``threads=None``: torch's default)."""
    env = {k: v for k, v in os.environ.items() if k not in (*THREAD_VARIABLES, "AIMS_KIT_THREADS")}
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    command = [sys.executable, __file__, "--worker", "--steps", str(steps)]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return max(float(worker.communicate()[0]) for worker in workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(workload(args.steps))
        return
    cores = available_cores()
    limited = max(1, cores // 2)
    print(f"{cores} cores available; {args.steps} steps per process")
    for label, threads in (("torch default threads", None), (f"{limited} thread(s) per process", limited)):
        alone = run_copies(1, threads, args.steps)
        together = run_copies(2, threads, args.steps)
        print(f"{label:>24}: alone {alone:6.2f}s, two concurrent {together:6.2f}s, ratio {together / alone:5.1f}x")


if __name__ == "__main__":
    main()
