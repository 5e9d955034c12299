"""The kill storm at a small scale: signals at random moments (start-up, training, inside checkpoint
writes, evaluation), a resume after each, and a final state bit-identical to an undisturbed run's."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_storm.py"
SMALL = ["data.num_train=256", "data.num_validation=8", "trainer.global_batch_size=16",
         "trainer.micro_batch_size=16", "trainer.save_interval=5", "trainer.hist_interval=20",
         "model.tiny.hidden_size=32", "model.tiny.ffn_hidden_size=64", "model.tiny.num_layers=1",
         "trainer.max_steps=80"]


def load_script():
    spec = importlib.util.spec_from_file_location("kill_storm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the storm finds a run's processes in /proc")
def test_storm_of_signals_ends_bit_identical_to_an_undisturbed_run(tmp_path, capsys):
    kill_storm = load_script()
    rc = kill_storm.main(["--signals", "4", "--seed", "3", "--out", str(tmp_path), *SMALL])
    report = json.loads((tmp_path / "kill_storm.json").read_text())
    assert rc == 0, capsys.readouterr().out[-3000:]
    assert report["bit_identical"] and report["differences"] == []
    assert report["signals"] == 4 and report["runs"] >= 5
    assert report["events"][-1]["exit_code"] == 0
    assert "bit-identical to the undisturbed run" in capsys.readouterr().out


def test_comparison_finds_a_changed_tensor_and_a_changed_metric(tmp_path):
    """The verdict can fail: one flipped bit in a shard, or one changed metric, is reported."""
    import torch

    kill_storm = load_script()
    for name, value in (("a", 1.0), ("b", 1.0)):
        run = tmp_path / name
        (run / "checkpoints" / "step_000002").mkdir(parents=True)
        (run / "checkpoints" / "latest").write_text("2\n")
        torch.save({"model": {"w": torch.tensor([value, 2.0])}}, run / "checkpoints" / "step_000002" / "rank_00.pt")
        (run / "metrics.jsonl").write_text('{"event": "train", "step": 1, "loss": 1.5, "seconds": 0.1}\n')
        (run / "eval").mkdir()
        (run / "eval" / "samples.jsonl").write_text('{"prompt": "x"}\n')
        (run / "summary.json").write_text('{"accuracy": {"sort": 0.5}}')
    assert kill_storm.compare_runs(tmp_path / "a", tmp_path / "b") == []
    # wall-clock fields and the stop records a clean stop adds are not results
    with open(tmp_path / "a" / "metrics.jsonl", "a") as f:
        f.write('{"event": "stopped", "step": 1}\n')
    assert kill_storm.compare_runs(tmp_path / "a", tmp_path / "b") == []
    torch.save({"model": {"w": torch.tensor([1.0 + 2 ** -23, 2.0])}},
               tmp_path / "a" / "checkpoints" / "step_000002" / "rank_00.pt")
    (tmp_path / "a" / "metrics.jsonl").write_text('{"event": "train", "step": 1, "loss": 1.25, "seconds": 0.1}\n')
    assert kill_storm.compare_runs(tmp_path / "a", tmp_path / "b") == ["rank_00.pt.model.w", "metrics.jsonl"]
