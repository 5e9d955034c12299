"""Tensor and data parallelism at 2 ranks (gloo, CPU), spawned by pytest: vocab-sharded DTensor logits
give the unsharded loss and gradient on every rank without gathering them, and the kept-token rule
sums the ranks' losses into the paper's mean over all ranks' kept tokens. A worker's exception
fails the test with its traceback."""

from __future__ import annotations

import json
import socket

import pytest
import torch.multiprocessing as mp

from tests.automodel import tp_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(check: str, tmp_path, world: int = 2) -> list:
    mp.spawn(tp_worker.run, args=(check, world, free_port(), str(tmp_path)), nprocs=world, join=True)
    return [json.loads((tmp_path / f"{check}-rank{r}.json").read_text()) for r in range(world)]


def test_vocab_sharded_dtensor_logits_equal_unsharded_at_tp2(tmp_path):
    worst = spawn("tensor_parallel", tmp_path)
    print("TP=2 vs TP=1, largest differences per rank:", worst)


def test_kept_count_rule_over_data_parallel_ranks(tmp_path):
    worst = spawn("data_parallel", tmp_path)
    print("DP=2 vs the paper's global kept mean, largest differences per rank:", worst)


def test_a_worker_failure_fails_the_test(tmp_path, monkeypatch):
    with pytest.raises(Exception, match="no such check"):
        mp.spawn(tp_worker.run, args=("no such check", 2, free_port(), str(tmp_path)), nprocs=2, join=True)
