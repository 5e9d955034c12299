"""Regenerate the measured CPU figures of the README and docs/probe.md from this checkout, with what they were measured on.

    python docs/regenerate.py                    # the main job's objectives, the continuum, the crossover
    python docs/regenerate.py --only main        # or --only continuum, --only crossover, --only kill_storm
    python docs/regenerate.py --only crossover --scratch runs/figures   # keep the runs: a rerun skips finished ones

Runs the README's commands as a user would (`nemo-beyond-nll sft --config recipes/tiny_cpu.yaml
model.loss=...`, `nemo-beyond-nll continuum ...`) into a scratch folder, then writes
`docs/figures.json` (the commit, the package versions, the machine's CPU count, the worker threads
and the load average beside every figure and wall time), `docs/continuum.md`, `docs/continuum.png`,
`docs/crossover.md`, `docs/crossover.png` and `docs/tiny_cpu_training.png`; and the kill storm's
report (`benchmarks/kill_storm.py` on the main job, 20 signals). `tests/test_readme.py` checks that the README and
docs/probe.md quote these files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIGURES = DOCS / "figures.json"
# The README's main-job commands: one per objective it quotes.
MAIN_JOBS = {
    "nll": [],
    "neg_p": ["model.loss=neg_p"],
    "neg_p_threshold": ["model.loss=neg_p_threshold", "model.loss_args.threshold=0.005"],
}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def environment() -> dict:
    versions = {}
    for package in ("torch", "megatron-core", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "nemo_beyond_nll", "recipes")),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "python": platform.python_version(),
            "packages": versions, "cpus": os.cpu_count(), "machine": platform.machine(),
            "worker_threads": int(os.environ.get("OMP_NUM_THREADS", "1"))}


def timed(cmd: list) -> dict:
    """Run a CLI command; its wall time and the 1-minute load average before and after."""
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return {"seconds": round(time.perf_counter() - began, 1), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def cli(*args: str) -> list:
    return [sys.executable, "-m", "nemo_beyond_nll", *args]


def main_job(scratch: Path) -> dict:
    results = {}
    for name, overrides in MAIN_JOBS.items():
        run_dir = scratch / f"tiny_cpu_{name}"
        timing = timed(cli("sft", "--config", "recipes/tiny_cpu.yaml", f"checkpoint.dir={run_dir}", *overrides))
        summary = json.loads((run_dir / "summary.json").read_text())
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in records if r["event"] == "train"]
        hists = [r for r in records if r["event"] == "prob_hist"]
        results[name] = {"command": " ".join(["nemo-beyond-nll", "sft", "--config", "recipes/tiny_cpu.yaml", *overrides]),
                         "accuracy": summary["accuracy"], "steps": train[-1]["step"],
                         "first_mean_p": round(train[0]["target_prob"], 4),
                         "first_kept_fraction": round(train[0]["kept_fraction"], 4),
                         "final_mean_p": round(hists[-1]["mean_p"], 3),
                         "final_kept_fraction": round(train[-1]["kept_fraction"], 4),
                         **timing}
        if name == "nll":
            shutil.copyfile(run_dir / "training.png", DOCS / "tiny_cpu_training.png")
    return results


def experiment(scratch: Path, name: str, results: str, key: str) -> dict:
    """`nemo-beyond-nll continuum --config recipes/<name>_cpu.yaml` into scratch; copies its table and
    figure into docs/ and returns its `results` JSON (as `key`) beside the command and timing."""
    out, recipe = scratch / name, f"recipes/{name}_cpu.yaml"
    timing = timed(cli("continuum", "--config", recipe, f"checkpoint.dir={out}"))
    for suffix in (".md", ".png"):
        shutil.copyfile(out / f"{name}{suffix}", DOCS / f"{name}{suffix}")
    return {"command": f"nemo-beyond-nll continuum --config {recipe}", key: json.loads((out / results).read_text()),
            **timing}


def continuum(scratch: Path) -> dict:
    return experiment(scratch, "continuum", "probes.json", "probes")


def crossover(scratch: Path) -> dict:
    return experiment(scratch, "crossover", "crossover.json", "rows")


def kill_storm(scratch: Path) -> dict:
    """benchmarks/kill_storm.py as shipped (20 signals on the main job, seed 0): its report, less the
    per-run list."""
    out = scratch / "kill_storm"
    shutil.rmtree(out, ignore_errors=True)  # the storm wants fresh folders
    command = ["benchmarks/kill_storm.py", "--out", str(out)]
    timing = timed([sys.executable, *command])
    report = json.loads((out / "kill_storm.json").read_text())
    report.pop("events")
    return {"command": "python " + " ".join(command[:1]), **report, **timing}


PARTS = {"main": main_job, "continuum": continuum, "crossover": crossover, "kill_storm": kill_storm}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=tuple(PARTS))
    parser.add_argument("--scratch", help="keep the runs in this folder (a rerun skips the runs that finished there; "
                                          "the wall time is then that of the rerun)")
    args = parser.parse_args(argv)
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    with tempfile.TemporaryDirectory(prefix="nemo_beyond_nll_figures_") as temporary:
        scratch = Path(args.scratch).resolve() if args.scratch else Path(temporary)
        for part, measure in PARTS.items():
            if args.only in (None, part):
                figures[part] = {"environment": environment(), "results": measure(scratch)}
                FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {FIGURES.relative_to(ROOT)}; quote it in README.md and docs/probe.md (tests/test_readme.py checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
