"""Checks shared by the torchrun workers (run as scripts: tests/support is on their path, so these
import by module name). A failed check raises; see `rank_report`."""

import os

import torch
import torch.distributed as dist

collectives = []  # names of the collectives the wrapped functions were called as, in order


def counting(fn, name=None):
    """`fn`, recording each call in `collectives` (under `name`, else its own name)."""
    def wrapper(*args, **kwargs):
        collectives.append(name or fn.__name__)
        return fn(*args, **kwargs)
    return wrapper


class CheckFailed(AssertionError):
    pass


def fail(message):
    raise CheckFailed(f"rank {os.environ.get('RANK', '0')}: {message}")


def check(a, b, what, tolerance):
    """Same dtype and equal up to `tolerance` = (rtol, atol), or exit naming `what`."""
    rtol, atol = tolerance
    if a.dtype != b.dtype:
        fail(f"{what}: dtype {a.dtype} vs {b.dtype}")
    if not torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol):
        fail(f"{what}: max diff {(a.double() - b.double()).abs().max().item():.3e}")


def same_on_all_ranks(t, what):
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    if not all(torch.equal(p, parts[0]) for p in parts):
        fail(f"{what} differs between ranks")
