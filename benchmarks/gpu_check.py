"""The GPU check in one go: install offline, then test and time the project on one CUDA device.

    python benchmarks/gpu_check.py OUT [--wheels DIR]    # on the GPU machine (benchmarks/gpu_check.sh)
    python benchmarks/gpu_check.py --smoke OUT           # the same steps at tiny sizes on CPU

Steps, in order of value; each runs in its own process under its own time budget (the whole fits
in --total seconds, 8 minutes by default), writes its files under OUT/<step>/ and its log to
OUT/<step>.log. A step that fails or runs out of time is recorded and the next one still runs.
OUT/summary.md holds the status table (rewritten after every step) and then each step's results;
OUT/status.csv the same table.

  install   pip install --no-index from the wheels of benchmarks/gpu_wheels.txt, then the project
            itself (--no-deps -e .); every step also finds the project through PYTHONPATH
  env       nvidia-smi, versions, the device, whether Triton compiles (not interpreted)
  tests     the Triton kernels' and the fused output layer's tests, compiled on CUDA
  headline  bf16, N=8192, V=131072, TP=1: every objective against Megatron's (fused) cross entropy,
            Liger's, PyTorch's and torch.compile's, with GB/s against --peak-gbps
  fused     the fused output layer at a Llama-8B-like shape against Liger's fused linear cross
            entropy, Cut Cross-Entropy and the unfused path
  gpt       a tiny bf16 Megatron-Core GPT with the hook installed (benchmarks/gpt_check.py)
  grid      N in {4096, 16384} x V in {32768, 131072, 151936}, in whatever time is left

Only the standard library is imported here: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
TESTS = ["tests/core/test_triton_kernels.py", "tests/core/test_linear.py"]
# On CPU the kernels run interpreted: a handful of the same tests, one per path.
SMOKE_TESTS = "(test_triton_equals_torch and neg_p_power) or test_triton_backend_inside_the_fused_path"

ENV_REPORT = r"""
import importlib, os, sys
import torch
lines = [f"python {sys.version.split()[0]}", f"torch {torch.__version__}, CUDA {torch.version.cuda}"]
for name in ("triton", "megatron.core", "liger_kernel", "cut_cross_entropy", "matplotlib", "pytest"):
    try:
        module = importlib.import_module(name)
        lines.append(f"{name} {getattr(module, '__version__', 'imported')}")
    except Exception as e:
        lines.append(f"{name} missing ({type(e).__name__}: {e})")
from nemo_beyond_nll.core import triton_kernels
lines.append(f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')}, kernels interpreted: {triton_kernels.INTERPRETED}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    lines.append(f"device {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
else:
    lines.append("device cpu (no CUDA)")
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "env.md"), "w").write("\n".join(f"- {line}" for line in lines) + "\n")
print("\n".join(lines))
want_cuda = sys.argv[2] == "cuda"
if want_cuda and (not torch.cuda.is_available() or triton_kernels.INTERPRETED):
    sys.exit("a GPU check needs CUDA and compiled Triton kernels")
"""


@dataclass
class Step:
    name: str
    budget_s: float
    commands: list = field(default_factory=list)  # argv lists, run in turn within the budget
    outputs: list = field(default_factory=list)  # globs under OUT/<name>/ that must exist afterwards
    skip: str = ""  # why the step does not run
    env: dict = field(default_factory=dict)  # None values unset the variable


@dataclass
class Result:
    name: str
    status: str
    seconds: float
    budget_s: float
    files: list
    note: str = ""


def steps(args) -> list:
    """The steps with their commands, budgets and expected files, for the GPU or the smoke run."""
    py, out, smoke = sys.executable, args.out, args.smoke
    device = "cpu" if smoke else "cuda"
    # On CPU the kernels can only run interpreted; on the GPU they must be compiled.
    triton = {"TRITON_INTERPRET": "1"} if smoke else {"TRITON_INTERPRET": None}

    install = Step("install", 60)
    if smoke:
        install.skip = "--smoke: nothing to install"
    elif not args.wheels.is_dir():
        install.skip = f"no wheel folder {args.wheels} (benchmarks/download_gpu_wheels.sh makes it)"
    else:
        # --no-compile: byte-compiling every file of the wheels costs more than the check gains from it
        pip = [py, "-m", "pip", "install", "--no-index", "--no-compile", "--disable-pip-version-check",
               "--find-links", str(args.wheels)]
        install.commands = [pip + ["-r", str(BENCH / "gpu_wheels.txt")],
                            pip + ["--no-deps", "--no-build-isolation", "-e", str(ROOT)]]

    env = Step("env", 20, outputs=["env.md"], env=triton)
    if not smoke:
        env.commands.append(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                             "--format=csv"])
    env.commands.append([py, "-c", ENV_REPORT, str(out / "env"), device])

    pytest = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", str(out / "tests" / "junit.xml"), *TESTS]
    tests = Step("tests", 130, [pytest + (["-k", SMOKE_TESTS] if smoke else [])], ["junit.xml"], env=triton)

    loss = [py, str(BENCH / "loss_benchmark.py"), "--device", device, "--peak-gbps", str(args.peak_gbps)]
    if smoke:  # later options override earlier ones: fewer cases, and no torch.compile (slow on a CPU)
        headline_args = ["--tokens", "64", "--vocab", "256", "--repeats", "1", "--triton",
                         "--objectives", "nll", "neg_p_threshold", "--compare", "megatron", "liger", "torch"]
        fused_args = ["--tokens", "64", "--hidden", "16", "--vocab", "512", "--repeats", "1"]
        gpt_args = ["--vocab", "256", "--hidden", "32", "--seq", "16", "--batch", "2", "--steps", "3"]
        grid_args = ["--tokens", "32", "64", "--vocab", "128", "--repeats", "1", "--dtypes", "bf16", "--compare", "torch"]
    else:
        headline_args = ["--tokens", "8192", "--vocab", "131072", "--repeats", "10"]
        fused_args = ["--tokens", "8192", "--hidden", "4096", "--vocab", "128256", "--repeats", "3"]
        gpt_args = []
        grid_args = ["--grid", "--repeats", "5"]
    headline = Step("headline", 130, [loss + ["--dtypes", "bf16", "--out", str(out / "headline"), *headline_args]],
                    ["loss_*.csv", "loss_*.md", "loss_*.png"], env=triton)
    fused = Step("fused", 60, [[py, str(BENCH / "fused_linear_benchmark.py"), "--device", device, "--dtype", "bf16",
                                "--objective", "nll", "--out", str(out / "fused"), *fused_args]],
                 ["fused_linear_*.csv", "fused_linear_*.md", "fused_linear_*.png"], env=triton)
    gpt = Step("gpt", 50, [[py, str(BENCH / "gpt_check.py"), "--device", device, "--out", str(out / "gpt"), *gpt_args]],
               ["gpt_check.csv", "gpt_check.md", "gpt_check.png"], env=triton)
    # torch.compile would compile again for every shape: left out of the grid.
    grid = Step("grid", 0, [loss + ["--dtypes", "bf16", "fp32", "--objectives", "nll", "neg_p", "neg_p_threshold",
                                    "--compare", "megatron", "megatron_fused", "liger", "torch",
                                    "--out", str(out / "grid"), *grid_args]],
                ["loss_*.csv", "loss_*.md"], env=triton)
    return [install, env, tests, headline, fused, gpt, grid]


def run_step(step: Step, out: Path, deadline: float) -> Result:
    """Run the step's commands in a new process group, killed (whole group) at its budget or the deadline."""
    folder = out / step.name
    folder.mkdir(parents=True, exist_ok=True)
    if step.skip:
        return Result(step.name, "skipped", 0.0, step.budget_s, [], step.skip)
    budget = min(step.budget_s, deadline - time.monotonic()) if step.budget_s else deadline - time.monotonic()
    if budget <= 1:
        return Result(step.name, "skipped", 0.0, step.budget_s, [], "no time left")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    for key, value in step.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    start = time.monotonic()
    status, note = "ok", ""
    with open(out / f"{step.name}.log", "w") as log:
        for command in step.commands:
            left = budget - (time.monotonic() - start)
            log.write(f"$ {' '.join(command) if len(' '.join(command)) < 500 else command[0] + ' ...'}\n")
            log.flush()
            try:
                proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as e:
                status, note = "failed", f"{command[0]}: {e}"
                break
            try:
                rc = proc.wait(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                kill_group(proc)
                status, note = "timeout", f"killed after {budget:.0f} s"
                break
            if rc != 0:
                status, note = "failed", f"{Path(command[1]).name if len(command) > 1 else command[0]} exited {rc}"
                break
    seconds = time.monotonic() - start
    if step.name == "tests":
        note = "; ".join(filter(None, [note, tests_summary(folder)]))
    files = sorted(str(p.relative_to(out)) for p in folder.rglob("*") if p.is_file())
    missing = [g for g in step.outputs if not list(folder.glob(g))]
    if missing and status == "ok":
        status, note = "failed", f"no {', '.join(missing)}"
    return Result(step.name, status, seconds, budget, files, note)


def kill_group(proc) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def tests_summary(folder: Path) -> str:
    """Counts from pytest's JUnit XML, and the failed tests by name (also written to tests.md)."""
    try:
        suites = ET.parse(folder / "junit.xml").getroot()
    except (OSError, ET.ParseError):
        return ""
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    text = (f"{passed} passed, {counts['failures']} failed, {counts['errors']} errors, "
            f"{counts['skipped']} skipped")
    (folder / "tests.md").write_text(text + "\n" + "".join(f"- FAILED {name}\n" for name in failed))
    return text


def write_summary(out: Path, results: list, args, started: float) -> None:
    mode = "smoke (CPU, tiny shapes)" if args.smoke else "GPU"
    lines = [f"# GPU check: {mode}", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {time.monotonic() - started:.0f} s of {args.total:.0f} s", "",
             "| step | status | seconds | budget s | files | note |", "|---|---|---:|---:|---:|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} | {r.budget_s:.0f} | {len(r.files)} | {r.note} |"
              for r in results]
    for r in results:
        for path in [out / f for f in r.files if f.endswith(".md")]:
            lines += ["", f"## {r.name}: {path.relative_to(out)}", "", path.read_text().rstrip()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    with open(out / "status.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "status", "seconds", "budget_s", "files", "note"])
        writer.writerows([r.name, r.status, f"{r.seconds:.1f}", f"{r.budget_s:.0f}", len(r.files), r.note]
                         for r in results)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for everything the check writes")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU, no install, no nvidia-smi")
    parser.add_argument("--wheels", type=Path, default=BENCH / "gpu_wheels", help="the wheel folder to install from")
    parser.add_argument("--total", type=float, default=None, help="seconds for all steps (default: 480; smoke 5400)")
    parser.add_argument("--peak-gbps", type=float, default=4800.0, help="memory bandwidth (H200: 4800)")
    parser.add_argument("--steps", nargs="+", help="run only these steps")
    args = parser.parse_args(argv)
    args.total = args.total or (5400.0 if args.smoke else 480.0)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    deadline = started + args.total
    results = []
    for step in steps(args):
        if args.steps and step.name not in args.steps:
            continue
        if args.smoke:
            step.budget_s = step.budget_s and max(step.budget_s, 900)  # a slow shared CPU; never the GPU's limits
        print(f"[gpu_check] {step.name} ...", flush=True)
        result = run_step(step, args.out, deadline)
        results.append(result)
        print(f"[gpu_check] {step.name}: {result.status} in {result.seconds:.0f} s {result.note}", flush=True)
        write_summary(args.out, results, args, started)
    print(f"[gpu_check] wrote {args.out / 'summary.md'}")
    return 0 if all(r.status in ("ok", "skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
