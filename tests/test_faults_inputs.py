"""Bad input files, across commands: each is one line on stderr and exit code 2, before any worker
starts and without touching the run folder."""

import json
import subprocess
from pathlib import Path

import pytest

from nemo_beyond_nll import engines
from nemo_beyond_nll.cli import main
from nemo_beyond_nll.engines.cpu import launch

ROOT = Path(__file__).parents[1]
TINY = str(ROOT / "recipes" / "tiny_cpu.yaml")
GPU = str(ROOT / "recipes" / "qwen2.5-math-1.5b_math.yaml")
GOOD = json.dumps({"prompt": "sort cab", "completion": "abc"}) + "\n"


class StartsNothing:
    """A Bridge engine whose commands fail the test when they run: checks must stop first. Its GPU
    evaluation is the real one, which checks every input before it loads vLLM or Megatron-Bridge."""

    runs_here = False

    def check(self, cfg, command):
        pass

    def eval(self, cfg):
        from nemo_beyond_nll.engines.bridge.engine import BridgeEngine

        return BridgeEngine().eval(cfg)

    def __getattr__(self, command):
        raise AssertionError(f"the Bridge engine's {command} was started")


@pytest.fixture
def no_processes(monkeypatch):
    """Fail the test if anything would start a worker process."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "call", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setitem(engines.ENGINES, "bridge", StartsNothing)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nemo-beyond-nll: error: "), err
    return err


BAD_SPLITS = [
    ("missing", None, "no such file"),
    ("empty", "", "empty file"),
    ("blank lines only", "\n\n  \n", "empty file"),
    ("broken JSON on line 2", GOOD + "{broken\n", ":2: not valid JSON"),
    ("a list, not an object", GOOD + GOOD + "[1, 2]\n", ":3: a row must be a JSON object"),
    ("no completion", json.dumps({"prompt": "sort ba"}) + "\n", ":1: no 'completion' field"),
    ("empty prompt", json.dumps({"prompt": "", "completion": "ab"}) + "\n", ":1: 'prompt' must be a non-empty string"),
    ("number as completion", json.dumps({"prompt": "x", "completion": 3}) + "\n", ":1: 'completion' must be a non-empty string"),
    ("outside the cpu tokenizer", json.dumps({"prompt": "sort é", "completion": "é"}) + "\n",
     ":1: 'prompt': character 'é' is outside"),
]


@pytest.mark.parametrize("which", ["train", "validation"])
@pytest.mark.parametrize("case, text, message", BAD_SPLITS, ids=[c[0] for c in BAD_SPLITS])
@pytest.mark.parametrize("command", ["sft", "probe", "eval"])
def test_bad_cpu_split_is_one_line_and_leaves_no_run_folder(tmp_path, capsys, no_processes, command, which, case,
                                                            text, message):
    files = {"train": tmp_path / "train.jsonl", "validation": tmp_path / "validation.jsonl"}
    for name, path in files.items():
        if name != which:
            path.write_text(GOOD)
        elif text is not None:
            path.write_text(text)
    run = tmp_path / "run"
    if command == "eval":  # eval needs a checkpoint: the run folder exists and must stay as it is
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "latest").write_text("100\n")
        (run / "config.yaml").write_text("old: config\n")
    before = snapshot(run) if run.exists() else None
    code = main([command, "--config", TINY, f"data.train={files['train']}", f"data.validation={files['validation']}",
                 f"checkpoint.dir={run}"])
    err = one_line_error(capsys)
    assert code == 2
    assert f"data.{which}: {files[which]}" in err and message in err
    assert (snapshot(run) if run.exists() else None) == before


def test_cpu_recipe_with_train_file_needs_a_validation_file(tmp_path, capsys, no_processes):
    (tmp_path / "train.jsonl").write_text(GOOD)
    assert main(["sft", "--config", TINY, f"data.train={tmp_path / 'train.jsonl'}", f"checkpoint.dir={tmp_path / 'run'}"]) == 2
    assert "data.validation is required" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_continuum_checks_the_data_files_it_would_read(tmp_path, capsys, no_processes):
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "validation.jsonl").write_text(GOOD)
    assert main(["continuum", "--config", str(ROOT / "recipes" / "continuum_cpu.yaml"),
                 f"data.train={tmp_path / 'train.jsonl'}", f"data.validation={tmp_path / 'validation.jsonl'}",
                 f"checkpoint.dir={tmp_path / 'run'}"]) == 2
    assert "empty file" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_good_split_files_reach_the_launcher(tmp_path, capsys, monkeypatch):
    for name in ("train", "validation"):
        (tmp_path / f"{name}.jsonl").write_text(GOOD * 3 + "\n")
    launched = []
    monkeypatch.setattr(launch, "launch_workers", lambda cfg, mode: launched.append(mode) or 0)
    assert main(["sft", "--config", TINY, f"data.train={tmp_path / 'train.jsonl'}",
                 f"data.validation={tmp_path / 'validation.jsonl'}", f"checkpoint.dir={tmp_path / 'run'}"]) == 0
    assert launched == ["train"]


def test_gpu_dry_run_warns_about_missing_data_and_a_real_run_refuses(tmp_path, capsys, no_processes, monkeypatch):
    monkeypatch.undo()  # the dry run may describe Bridge's side; only the real run must start nothing
    missing = tmp_path / "nowhere" / "train.jsonl"
    args = ["--config", GPU, f"data.train={missing}", f"checkpoint.dir={tmp_path / 'run'}"]
    assert main(["sft", "--dry-run", *args]) == 0
    out = capsys.readouterr().out
    assert f"# warning: data.train: {missing}: no such file" in out
    monkeypatch.setitem(engines.ENGINES, "bridge", StartsNothing)
    assert main(["sft", *args]) == 2
    assert f"data.train: {missing}: no such file" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_gpu_probe_checks_the_training_file(tmp_path, capsys, no_processes):
    bad = tmp_path / "train.jsonl"
    bad.write_text(GOOD + "not json\n")
    assert main(["probe", "--config", GPU, f"data.train={bad}", f"checkpoint.dir={tmp_path / 'run'}"]) == 2
    assert f"data.train: {bad}:2: not valid JSON" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "model.hf_path: no such folder"),
    (lambda p: p.mkdir(), "holds no config.json"),
])
def test_import_of_a_local_backbone_folder_that_is_not_there(tmp_path, capsys, no_processes, monkeypatch, make,
                                                            message):
    folder = tmp_path / "Qwen2.5-Math-1.5B"
    make(folder)
    assert main(["import", "--config", GPU, f"model.hf_path={folder}"]) == 2
    assert message in one_line_error(capsys)
    monkeypatch.undo()  # the dry run names where the import would write
    assert main(["import", "--config", GPU, f"model.hf_path={folder}", "--dry-run"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# warning: model.hf_path")]
    assert len(warnings) == 1 and message in warnings[0]


def test_hub_ids_are_not_checked_locally():
    from nemo_beyond_nll.recipe import backbone_problem

    assert backbone_problem("Qwen/Qwen2.5-Math-1.5B") is None
    assert backbone_problem("./Qwen/Qwen2.5-Math-1.5B") is not None


@pytest.mark.parametrize("text, message", [
    ("", "has no usable rows"),
    ("{broken\n[1]\n", "has no usable rows"),
])
def test_gpu_eval_bad_benchmark_file(tmp_path, capsys, no_processes, text, message):
    (tmp_path / "run" / "checkpoints" / "iter_0000010").mkdir(parents=True)
    bench = tmp_path / "math500.jsonl"
    bench.write_text(text)
    before = snapshot(tmp_path / "run")
    assert main(["eval", "--config", GPU, f"checkpoint.dir={tmp_path / 'run'}", "eval.benchmarks=[math500]",
                 f"eval.benchmark_files={{math500: {bench}}}"]) == 2
    assert message in one_line_error(capsys)
    assert snapshot(tmp_path / "run") == before


def test_gpu_eval_missing_benchmark_file(tmp_path, capsys, no_processes):
    (tmp_path / "run" / "checkpoints" / "iter_0000010").mkdir(parents=True)
    assert main(["eval", "--config", GPU, f"checkpoint.dir={tmp_path / 'run'}", "eval.benchmarks=[math500]",
                 f"eval.benchmark_files={{math500: {tmp_path / 'none.jsonl'}}}"]) == 2
    assert "file for benchmark 'math500' not found" in one_line_error(capsys)


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no summary.json"),
    (lambda d: (d.mkdir(), (d / "summary.json").write_text("")), "not valid JSON"),
    (lambda d: (d.mkdir(), (d / "summary.json").write_text('{"objective": "nll"}')), "'accuracy' must map"),
])
def test_compare_bad_run_folders(tmp_path, capsys, make, message):
    make(tmp_path / "a")
    assert main(["compare", str(tmp_path / "a"), "--out", str(tmp_path / "cmp")]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "cmp").exists()
