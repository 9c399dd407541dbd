"""Two real gloo ranks on CPU: a non-finite loss on one rank skips the step on every rank.

Before the fix a rank with a NaN loss skipped ``backward()`` while the other all-reduced its
gradients under DDP, and the job hung. Here rank 1's loss is NaN; both ranks must agree to skip,
and a DDP step with a finite loss on both still runs (so the group is not left half-reduced).
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.loop import DistContext, all_ranks_finite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        ctx = DistContext(rank=rank, world_size=2)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 1))
        decisions = []
        for nan_on in (1, None, 0):
            loss = model(torch.ones(2, 3)).sum()
            if rank == nan_on:
                loss = loss * float("nan")
            ok = all_ranks_finite(loss, ctx)
            decisions.append(ok)
            if ok:
                loss.backward()  # all-reduces the gradients: both ranks must be here together
        results[rank] = decisions
    finally:
        dist.destroy_process_group()


def test_a_nan_on_one_rank_skips_the_step_on_all_ranks() -> None:
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(worker, args=(free_port(), results), nprocs=2, join=True)
    assert results[0] == results[1] == [False, True, False]


def test_one_process_needs_no_group() -> None:
    ctx = DistContext()
    assert all_ranks_finite(torch.tensor(1.0), ctx) and not all_ranks_finite(torch.tensor(float("inf")), ctx)
