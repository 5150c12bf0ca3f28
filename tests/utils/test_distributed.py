"""Who joins a process group: one process under torchrun does (gloo on a CPU), a plain run does not."""

import socket

import torch

from reidlib.utils import distributed as dist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_under_torchrun_joins_a_group(monkeypatch):
    """torchrun --nproc_per_node 1 sets these; the process joins a group of one, and the
    collectives run through it."""
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": str(free_port()), dist.TORCHRUN_ID: "test"}.items():
        monkeypatch.setenv(key, value)
    ctx = dist.setup(torch.device("cpu"))
    try:
        assert ctx.distributed and (ctx.rank, ctx.world, ctx.backend) == (0, 1, "gloo")
        rows = torch.arange(6.0).view(3, 2)
        assert torch.equal(dist.all_gather_rows(ctx, rows), rows)
        assert dist.any_flags(ctx, True, False) == (True, False)
        assert dist.all_gather_objects(ctx, "x") == ["x"]
    finally:
        dist.teardown(ctx)
    assert not torch.distributed.is_initialized()


def test_a_plain_run_joins_no_group(monkeypatch):
    monkeypatch.delenv(dist.TORCHRUN_ID, raising=False)
    for world in (None, "1"):  # unset, or set to 1 by something other than torchrun
        if world is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", world)
        ctx = dist.setup(torch.device("cpu"))
        assert not ctx.distributed and ctx.backend is None and (ctx.rank, ctx.world) == (0, 1)
