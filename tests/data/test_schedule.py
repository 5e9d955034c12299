from types import SimpleNamespace

import pytest

from nemo_beyond_nll.data.schedule import optimizer_steps


@pytest.mark.parametrize("rows, epochs, batch, steps", [(1000, 1, 256, 4), (1024, 1, 256, 4), (1025, 1, 256, 5),
                                                        (1000, 2.5, 256, 10), (3, 1, 256, 1), (0, 1, 256, 1)])
def test_optimizer_steps(rows, epochs, batch, steps):
    assert optimizer_steps(rows, epochs, batch) == steps


def test_both_engines_count_steps_alike(tmp_path):
    from nemo_beyond_nll.engines.bridge.finetune import train_iters
    from nemo_beyond_nll.engines.cpu.trainer import total_steps

    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "q", "completion": "a"}\n' * 1300)
    trainer = SimpleNamespace(max_steps=None, epochs=1.5, global_batch_size=256)
    cfg = SimpleNamespace(trainer=trainer, data=SimpleNamespace(train=str(train), drop_last=False))
    assert train_iters(cfg) == total_steps(cfg, 1300) == optimizer_steps(1300, 1.5, 256) == 8


@pytest.mark.parametrize("rows, epochs, batch, steps", [(40000, 1, 256, 156), (1024, 1, 256, 4), (1000, 2.5, 256, 9),
                                                        (3, 1, 256, 1)])
def test_drop_last_leaves_out_the_partial_batch(rows, epochs, batch, steps):
    assert optimizer_steps(rows, epochs, batch, drop_last=True) == steps


def test_both_engines_honour_drop_last(tmp_path):
    from nemo_beyond_nll.engines.bridge.finetune import train_iters
    from nemo_beyond_nll.engines.cpu.trainer import total_steps

    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "q", "completion": "a"}\n' * 1300)
    trainer = SimpleNamespace(max_steps=None, epochs=1, global_batch_size=256)
    cfg = SimpleNamespace(trainer=trainer, data=SimpleNamespace(train=str(train), drop_last=True))
    assert train_iters(cfg) == total_steps(cfg, 1300) == 5
