import json

import pytest
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from nemo_beyond_nll.engines.cpu.runtime import init_distributed_cpu
from nemo_beyond_nll.recipe import Recipe
from nemo_beyond_nll.engines.cpu.checkpoint import latest_step, load_checkpoint, remove_unfinished_steps, save_checkpoint
from nemo_beyond_nll.engines.cpu.trainer import batch_indices, lr_lambda, total_steps
from nemo_beyond_nll.utils.files import atomic_write_text, read_jsonl
from nemo_beyond_nll.engines.cpu.metrics import MetricsLog, probability_histogram


def test_batches_cover_each_epoch_once_and_repeat_exactly():
    n, b = 10, 4
    seen = torch.cat([batch_indices(s, b, n, seed=1) for s in range(5)])  # 20 = two epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert torch.equal(batch_indices(3, b, n, seed=1), batch_indices(3, b, n, seed=1))
    assert not torch.equal(batch_indices(0, b, n, seed=1), batch_indices(0, b, n, seed=2))


def test_schedule_warmup_then_cosine_to_min():
    cfg = OmegaConf.structured(Recipe)
    cfg.optim.lr, cfg.optim.min_lr, cfg.optim.warmup_ratio = 1.0, 0.1, 0.1
    f = lr_lambda(cfg, 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.1)
    assert f(55) == pytest.approx(0.55)
    cfg.trainer.max_steps = None
    cfg.trainer.epochs, cfg.trainer.global_batch_size = 2, 64
    assert total_steps(cfg, 1000) == 32


def test_histogram_counts_masked_tokens():
    prob = torch.tensor([0.01, 0.5, 0.99, 1.0, 0.3])
    mask = torch.tensor([1, 1, 1, 1, 0])
    counts = probability_histogram(prob, mask, bins=4)
    assert counts == [1, 0, 1, 2]


def test_metrics_rewind_drops_later_records(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in range(1, 6):
        log.append({"event": "train", "step": step})
    log.append({"event": "prob_hist", "step": 5, "counts": [1]})
    log.rewind(3)
    assert [r["step"] for r in log.records("train")] == [1, 2, 3]
    assert log.records("prob_hist") == []


def test_metrics_rewind_to_a_fresh_start_drops_the_initial_histogram_and_keeps_the_auto_choice(tmp_path):
    """A run killed before its first checkpoint measured p at step 0; the rerun measures it again,
    so the first measurement goes (the kill storm found it twice); model.loss=auto's choice stays."""
    log = MetricsLog(tmp_path / "m.jsonl")
    log.append({"event": "auto", "step": 0, "objective": "nll"})
    log.append({"event": "prob_hist", "step": 0, "counts": [1]})
    log.append({"event": "train", "step": 1})
    log.rewind(0)
    assert [r["event"] for r in read_jsonl(tmp_path / "m.jsonl")] == ["auto"]


def test_metrics_rewind_drops_a_line_cut_by_a_kill(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"event": "train", "step": 1}\n{"event": "train", "step": 2}\n{"event": "tra')
    MetricsLog(path).rewind(1)
    assert read_jsonl(path) == [{"event": "train", "step": 1}]
    path.write_text('{"event": "tra\n{"event": "train", "step": 2}\n')  # not the last line: still an error
    with pytest.raises(ValueError):
        read_jsonl(path, torn_tail=True)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "a.json", json.dumps({"x": 1}))
    with pytest.raises(RuntimeError):
        from nemo_beyond_nll.utils.files import atomic_write

        def fail(path):
            path.write_text("half")
            raise RuntimeError("interrupted")

        atomic_write(tmp_path / "a.json", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_checkpoint_latest_pointer_and_pruning(tmp_path):
    init_distributed_cpu()
    root = tmp_path / "ckpt"
    assert load_checkpoint(root, rank=0) is None
    for step in (10, 20, 30):
        save_checkpoint(root, step, {"step": step, "w": torch.full((2,), float(step))}, rank=0, keep=2)
    assert latest_step(root) == 30
    assert sorted(p.name for p in root.glob("step_*")) == ["step_000020", "step_000030"]
    # A save interrupted after its files but before `latest` moved is not resumed from.
    (root / "step_000040").mkdir()
    (root / "step_000040" / "rank_00.pt").write_bytes(b"partial")
    state = load_checkpoint(root, rank=0)
    assert state["step"] == 30 and torch.equal(state["w"], torch.full((2,), 30.0))
    save_checkpoint(root, 31, {"step": 31}, rank=0, keep=2)
    assert not (root / "step_000040").exists()
    with pytest.raises(FileNotFoundError, match="another parallel layout"):
        load_checkpoint(root, rank=1)
    assert dist.is_initialized()


class _RunsCode:
    """A pickled object that would run code when loaded with weights_only=False."""

    def __reduce__(self):
        import os

        return (os.system, ("touch CODE_RAN",))


def test_checkpoint_with_a_crafted_object_is_refused_without_running_it(tmp_path, monkeypatch):
    init_distributed_cpu()
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "ckpt"
    save_checkpoint(root, 5, {"step": 5, "w": torch.ones(2)}, rank=0)
    torch.save({"step": 5, "payload": _RunsCode()}, root / "step_000005" / "rank_00.pt")
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(root, rank=0)
    assert not (tmp_path / "CODE_RAN").exists()


def test_unfinished_checkpoint_steps_are_removed_on_start(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        (root / f"step_{step:06d}").mkdir(parents=True)
    (root / "step_000006" / "rank_00.pt").write_bytes(b"partial")  # a save killed before `latest` moved
    assert remove_unfinished_steps(root) == [2, 4, 6]  # no `latest`: nothing is complete
    for step in (2, 4, 6):
        (root / f"step_{step:06d}").mkdir()
    atomic_write_text(root / "latest", "4\n")
    assert remove_unfinished_steps(root) == [6]
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000002", "step_000004"]
    assert remove_unfinished_steps(tmp_path / "missing") == []


def test_zero_kept_warning_names_threshold_and_mean_p():
    from nemo_beyond_nll.core.objectives import get_objective
    from nemo_beyond_nll.megatron.step import zero_kept_warning

    objective = get_objective("neg_p_threshold", threshold=0.1)
    text = zero_kept_warning(objective, "at steps 1-5", 0.0078125, detail=f", threshold {objective.threshold:g}")
    assert text == ("WARNING: neg_p_threshold(threshold=0.1, keep=above) keeps no token at steps 1-5 (kept fraction 0, "
                    "threshold 0.1, mean p 0.007812): it trains nothing there; lower model.loss_args.threshold "
                    "if this persists")


def test_reinitialising_megatron_with_the_same_sizes_reuses_its_groups():
    """A sweep starts one run after another in one process: each run's start must not make new
    process groups (torch keeps them all, with their gloo threads, for the process's life)."""
    import threading

    from megatron.core import parallel_state

    from nemo_beyond_nll.engines.cpu.runtime import init_megatron_cpu

    init_megatron_cpu(tensor_parallel=1)
    group, threads = parallel_state.get_tensor_model_parallel_group(), threading.active_count()
    for _ in range(3):
        init_megatron_cpu(tensor_parallel=1)
    assert parallel_state.get_tensor_model_parallel_group() is group
    assert threading.active_count() == threads
