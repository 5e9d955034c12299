import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_beyond_nll.cli import main
from nemo_beyond_nll.data.pipeline import check_complete
from nemo_beyond_nll.run_folder import RunFolder

ROOT = Path(__file__).parents[1]
TINY = str(ROOT / "recipes" / "tiny_cpu.yaml")


def test_dry_run_prints_resolved_config_and_objective(capsys):
    code = main(["sft", "--config", TINY, "--dry-run", "model.loss=neg_p_threshold",
                 "model.loss_args.threshold=0.1", "trainer.max_steps=7"])
    out = capsys.readouterr().out
    assert code == 0
    assert "max_steps: 7" in out and "threshold: 0.1" in out
    assert "# objective: neg_p_threshold(threshold=0.1, keep=above)" in out
    assert "dir: runs/tiny_cpu_neg_p_threshold" in out  # interpolations are resolved


@pytest.mark.parametrize("command", ["sft", "eval", "import", "probe", "continuum"])
def test_every_command_has_a_dry_run(capsys, command):
    recipe = TINY if command != "import" else str(ROOT / "recipes" / "qwen2.5-math-1.5b_math.yaml")
    assert main([command, "--config", recipe, "--dry-run"]) == 0
    assert capsys.readouterr().out


def test_gpu_recipe_dry_run_shows_bridge_overrides(capsys):
    assert main(["sft", "--config", str(ROOT / "recipes" / "llama3.1-70b_math.yaml"), "--dry-run",
                 "model.loss=OnlyTopP-0.1", "trainer.max_steps=50"]) == 0
    out = capsys.readouterr().out
    assert "# objective: neg_p_threshold(threshold=0.1, keep=above)" in out
    assert "model.tensor_model_parallel_size=8" in out and "train.train_iters=50" in out
    assert "scheduler.lr_warmup_iters=5" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["sft", "--config", TINY, "trainer.max_step=3"], "unknown config key 'trainer.max_step' (did you mean 'trainer.max_steps'?)"),
        (["sft", "--config", "no/such.yaml"], "config file not found: no/such.yaml"),
        (["sft", "--config", TINY, "optimizer.lr=1"], "unknown config key 'optimizer.lr' (did you mean 'optim.lr'?)"),
        (["sft", "--config", TINY, "cluster.name=x"], "unknown config key 'cluster.name' (not a key of the schema; new keys only under model.loss_args, eval.per_benchmark, eval.benchmark_files)"),
        (["sft", "--config", TINY, "trainer.max_steps=many"], "bad value for 'trainer.max_steps'"),
        (["sft", "--config", TINY, "model.loss=focal"], "unknown objective 'focal'"),
        (["sft", "--config", TINY, "model.loss=neg_p_power", "model.loss_args.alpha=-1"], "'alpha' must be > 0"),
        (["eval", "--config", TINY, "checkpoint.dir=/nonexistent/run"], "no checkpoint in /nonexistent/run"),
        (["import", "--config", TINY], "import converts a Hugging Face backbone"),
        (["import", "--config", TINY, "--dry-run"], "import converts a Hugging Face backbone"),
        (["continuum", "--config", str(ROOT / "recipes" / "qwen2.5-7b_medical.yaml")], "continuum runs the cpu engine"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("nemo-beyond-nll: error: ")


def test_console_script_is_installed():
    proc = subprocess.run(["nemo-beyond-nll", "sft", "--config", TINY, "--dry-run"], capture_output=True, text=True)
    assert proc.returncode == 0 and "# objective: nll()" in proc.stdout


def test_torchrun_launcher_builds_the_multi_node_command():
    env = {**os.environ, "DRY_RUN": "1", "NNODES": "4", "NODE_RANK": "3", "MASTER_ADDR": "node-0", "MASTER_PORT": "29500",
           "GPUS_PER_NODE": "8"}
    proc = subprocess.run(["bash", str(ROOT / "recipes/launch/torchrun.sh"), "recipes/llama3.1-70b_math.yaml",
                           "model.loss=neg_p"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for part in ("--nnodes=4", "--node_rank=3", "--nproc_per_node=8", "--rdzv_endpoint=node-0:29500",
                 "-m nemo_beyond_nll sft --config recipes/llama3.1-70b_math.yaml model.loss=neg_p"):
        assert part in proc.stdout


def test_launcher_rejects_a_missing_recipe():
    proc = subprocess.run(["bash", str(ROOT / "recipes/launch/torchrun.sh"), "nope.yaml"], capture_output=True, text=True)
    assert proc.returncode == 2 and "recipe not found: nope.yaml" in proc.stderr


def test_slurm_template_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(ROOT / "recipes/launch/slurm.sbatch")]).returncode == 0


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "nemo_beyond_nll", "sft", "--config", TINY, "--dry-run"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "engine: cpu" in proc.stdout


def test_compare_command(tmp_path, capsys):
    for name, acc in (("a", 0.5), ("b", 0.75)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"objective": name, "accuracy": {"sort": acc}}))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "50.0" in out and "75.0" in out
    assert (tmp_path / "cmp" / "comparison.png").exists() and (tmp_path / "cmp" / "comparison.csv").exists()
    assert main(["compare", str(tmp_path / "missing"), "--out", str(tmp_path / "cmp")]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_gpu_eval_errors_are_one_line(tmp_path, capsys, monkeypatch):
    recipe = str(ROOT / "recipes" / "qwen2.5-math-7b_math.yaml")
    assert main(["eval", "--config", recipe, f"checkpoint.dir={tmp_path}/run"]) == 2
    assert "no Megatron checkpoint (iter_* folder)" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoints" / "iter_0000010").mkdir(parents=True)
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/MATH-500' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["eval", "--config", recipe, f"checkpoint.dir={tmp_path}/run"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the benchmarks from the Hugging Face hub" in err and err.count("\n") == 1


def test_data_command_builds_a_domain(tmp_path, capsys):
    assert main(["data", "figfont", "--size", "20", "--seed", "3", "--out", str(tmp_path / "ff")]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert report["kept"] == 20 and report["train"] + report["validation"] == 20
    rows = [json.loads(line) for line in (tmp_path / "ff" / "train.jsonl").read_text().splitlines()]
    assert rows and all(r["prompt"] and r["completion"] for r in rows)


def test_data_command_reads_a_local_file_and_counts_bad_rows(tmp_path, capsys):
    source = tmp_path / "numina.jsonl"
    source.write_text(json.dumps({"problem": "1+1?", "solution": "It is \\\\boxed{2}."}) + "\n"
                      + json.dumps({"problem": "2+2?", "solution": "no box here"}) + "\n" + "{broken\n")
    assert main(["data", "math", "--source", str(source), "--out", str(tmp_path / "m")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kept"] == 1 and report["dropped"]["no_boxed_answer"] == 1 and report["dropped"]["malformed"] == 1


def test_data_command_errors(tmp_path, capsys):
    assert main(["data", "math", "--max-length", "5", "--out", str(tmp_path)]) == 2
    assert "need --tokenizer" in capsys.readouterr().err
    assert main(["data", "math", "--source", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nemo-beyond-nll: error:") and err.count("\n") == 1


@pytest.mark.parametrize("text", ["", "{broken\n" + json.dumps({"problem": "1+1?", "solution": "no box"}) + "\n"])
def test_data_command_refuses_a_source_with_no_usable_row(tmp_path, capsys, text):
    source = tmp_path / "numina.jsonl"
    source.write_text(text)
    assert main(["data", "math", "--source", str(source), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.split("\r")[-1]  # after the progress bar
    err = err[err.index("\n") + 1:]
    assert err.startswith("nemo-beyond-nll: error: no rows to train on from") and err.count("\n") == 1
    assert "kept 0" in err and (("malformed 1, no_boxed_answer 1" in err) if text else "read 0" in err)
    assert not (tmp_path / "m").exists()


def test_launcher_refuses_missing_data_before_torchrun(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "recipes/launch/torchrun.sh"), "recipes/qwen2.5-math-1.5b_math.yaml",
                           f"data.train={tmp_path}/none.jsonl", f"checkpoint.dir={tmp_path}/run"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert f"error: data.train: {tmp_path}/none.jsonl: no such file" in proc.stderr
    assert "torchrun" not in proc.stderr.replace("torchrun.sh", "") and not (tmp_path / "run").exists()


def test_help_does_not_offer_plus_for_new_keys(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "+new.key" not in out and "new keys only inside `model.loss_args`" in out


def test_a_second_data_build_into_a_folder_being_built_fails_at_once_naming_the_first(tmp_path):
    out = tmp_path / "ff"
    build = [sys.executable, "-m", "nemo_beyond_nll", "data", "figfont", "--size", "20", "--out", str(out)]
    assert subprocess.run(build, capture_output=True).returncode == 0
    report = (out / "report.json").read_text()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nemo_beyond_nll.run_folder import "
                               "acquire; acquire(sys.argv[1], 'the first build'); print('locked', flush=True); "
                               "time.sleep(600)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run(build, capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr == (f"nemo-beyond-nll: error: data folder {out} is in use by pid {holder.pid} on "
                               f"{socket.gethostname()}, `the first build`, since "
                               f"{json.loads(RunFolder(out).lock.read_text())['started']}: wait for that build to end, "
                               f"or give this one another --out\n")
        # The first build's folder is as it was: complete, its report untouched.
        assert (out / "report.json").read_text() == report and not (out / ".incomplete").exists()
    finally:
        holder.kill()
        holder.wait()
    # The lock file is no data: the folder reads as a complete build, and builds again.
    check_complete(out / "train.jsonl")
    assert main(["data", "figfont", "--size", "20", "--out", str(out)]) == 0


def test_a_data_build_that_writes_nothing_leaves_no_folder_for_its_lock(tmp_path, capsys):
    assert main(["data", "math", "--source", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
