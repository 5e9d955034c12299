"""The GPU check stays runnable: its smoke mode runs every step end to end on CPU, a failing or
overrunning step is recorded while the next one runs, and its wheel list covers what it installs."""

import ast
import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402

STEPS = ["install", "env", "tests", "headline", "fused", "gpt", "grid"]
# What each step must leave under OUT/<step>/ in the smoke run.
FILES = {
    "env": ["env/env.md"],
    "tests": ["tests/junit.xml", "tests/tests.md"],
    "headline": ["headline/loss_cpu_N64_V256.csv", "headline/loss_cpu_N64_V256.md", "headline/loss_cpu_N64_V256.png"],
    "fused": [f"fused/fused_linear_cpu_N64_H16_V512_bf16.{ext}" for ext in ("csv", "md", "png")],
    "gpt": ["gpt/gpt_check.csv", "gpt/gpt_check.md", "gpt/gpt_check.png"],
    "grid": ["grid/loss_cpu_grid.csv", "grid/loss_cpu_grid.md", "grid/loss_cpu_grid.png"],
}


def test_smoke_runs_every_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--smoke", str(out)], capture_output=True,
                          text=True, env=env, timeout=5400)  # a hang guard only
    logs = {p.name: p.read_text()[-2000:] for p in out.glob("*.log")}
    assert proc.returncode == 0, (proc.stdout[-3000:], logs)

    status = {row["step"]: row for row in csv.DictReader(open(out / "status.csv"))}
    assert list(status) == STEPS
    assert status["install"]["status"] == "skipped" and status["install"]["note"] == "--smoke: nothing to install"
    summary = (out / "summary.md").read_text()
    for step in STEPS[1:]:
        assert status[step]["status"] == "ok", (step, logs.get(f"{step}.log"))
        assert f"| {step} | ok |" in summary
        for name in FILES[step]:
            assert (out / name).stat().st_size > 0, name
        assert (out / f"{step}.log").exists()
    for name in ("headline/loss_cpu_N64_V256.png", "gpt/gpt_check.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"

    assert status["tests"]["note"] == "3 passed, 0 failed, 0 errors, 0 skipped"
    assert "kernels interpreted: True" in (out / "env/env.md").read_text()
    headline = list(csv.DictReader(open(out / "headline/loss_cpu_N64_V256.csv")))
    assert {(r["method"], r["objective"]) for r in headline} >= {
        ("megatron", "nll"), ("torch", "nll"), ("ours", "neg_p_threshold"), ("ours_triton", "neg_p_threshold")}
    assert "- liger: RuntimeError: its kernels need CUDA" in summary  # the skipped comparison, with its reason
    assert summary.count("| PASS |") == 7 and "FAIL" not in summary  # gpt_check's table
    gpt = list(csv.DictReader(open(out / "gpt/gpt_check.csv")))
    assert len(gpt) == 3 and all(0 < float(r["kept_fraction"]) <= 1 for r in gpt)
    grid = {(r["tokens"], r["vocab"]) for r in csv.DictReader(open(out / "grid/loss_cpu_grid.csv"))}
    assert grid == {("32", "128"), ("64", "128")}


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie is dead, only not yet reaped


def test_a_failed_or_overrunning_step_is_recorded_and_the_next_runs(tmp_path, monkeypatch):
    py = sys.executable
    fake = [
        gpu_check.Step("broken", 30, [[py, "-c", "import sys; sys.exit(3)"], [py, "-c", "open('never', 'w')"]]),
        gpu_check.Step("slow", 2, [[py, "-c", "import subprocess, sys, time; "
                                    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                                    "open(sys.argv[1], 'w').write(str(child.pid)); time.sleep(600)",
                                    str(tmp_path / "child.pid")]]),
        gpu_check.Step("silent", 30, [[py, "-c", "pass"]], outputs=["result.csv"]),
        gpu_check.Step("fine", 30, [[py, "-c", "import os, sys; open(os.path.join(sys.argv[1], 'result.csv'), 'w')",
                                     str(tmp_path / "fine")]], outputs=["result.csv"]),
        gpu_check.Step("absent", 30, skip="nothing to do"),
    ]
    monkeypatch.setattr(gpu_check, "steps", lambda args: fake)
    assert gpu_check.main([str(tmp_path)]) == 1
    assert not running(int((tmp_path / "child.pid").read_text()))  # the step's whole process group was killed
    status = {row["step"]: row for row in csv.DictReader(open(tmp_path / "status.csv"))}
    assert [(s, status[s]["status"]) for s in status] == [
        ("broken", "failed"), ("slow", "timeout"), ("silent", "failed"), ("fine", "ok"), ("absent", "skipped")]
    assert status["broken"]["note"] == "-c exited 3" and not (gpu_check.ROOT / "never").exists()
    assert status["silent"]["note"] == "no result.csv"
    assert status["fine"]["files"] == "1" and status["absent"]["note"] == "nothing to do"
    assert "| slow | timeout |" in (tmp_path / "summary.md").read_text()


def test_gpu_plan_compiles_the_kernels_and_fits_its_budget(tmp_path):
    ns = type("Args", (), {"out": tmp_path, "smoke": False, "wheels": tmp_path / "none", "peak_gbps": 4800.0})
    plan = {s.name: s for s in gpu_check.steps(ns)}
    assert list(plan) == STEPS
    assert plan["install"].skip.startswith("no wheel folder")
    for name in STEPS[1:]:
        assert plan[name].env == {"TRITON_INTERPRET": None}  # unset: compiled, never interpreted
        assert all("cpu" not in cmd for cmd in plan[name].commands)
    assert plan["env"].commands[0][0] == "nvidia-smi"
    headline = plan["headline"].commands[0]
    assert headline[headline.index("--tokens") + 1:][:3] == ["8192", "--vocab", "131072"]
    assert "--smoke" not in " ".join(" ".join(c) for s in plan.values() for c in s.commands)
    fixed = sum(s.budget_s for s in plan.values())
    assert plan["grid"].budget_s == 0 and fixed <= 480 - 20  # the grid takes what is left of 8 minutes

    ns.wheels = tmp_path
    install = gpu_check.steps(ns)[0].commands
    for command in install:  # offline, from the carried folder
        assert command[1:4] == ["-m", "pip", "install"] and "--no-index" in command
        assert command[command.index("--find-links") + 1] == str(tmp_path)
    assert install[0][-2:] == ["-r", str(gpu_check.BENCH / "gpu_wheels.txt")]
    assert install[1][-4:] == ["--no-deps", "--no-build-isolation", "-e", str(gpu_check.ROOT)]


def pinned(path):
    names = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            names[name.lower().replace("_", "-")] = version
    return names


def install_requires():
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    value = next(k.value for k in call.keywords if k.arg == "install_requires")
    return {ast.literal_eval(e).split(">")[0].split("<")[0].split("=")[0].strip().lower() for e in value.elts}


def test_wheel_list_covers_what_the_machine_lacks():
    wheels = pinned(ROOT / "benchmarks/gpu_wheels.txt")
    machine = {"torch", "numpy", "triton", "transformers", "pyyaml", "tqdm"}  # pyyaml, tqdm: transformers' own
    assert install_requires() - machine <= wheels.keys()
    assert not machine & wheels.keys()
    assert {"megatron-core", "liger-kernel", "cut-cross-entropy", "pytest"} <= wheels.keys()
    assert wheels["megatron-core"] == "0.16.1"


def test_wheel_folder_is_ignored_and_the_scripts_parse():
    assert subprocess.run(["git", "check-ignore", "-q", "benchmarks/gpu_wheels/x.whl"], cwd=ROOT).returncode == 0
    for script in ("gpu_check.sh", "download_gpu_wheels.sh"):
        assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / script)]).returncode == 0
