"""A kill storm: the CPU main job under a burst of signals, resumed after each, against a run left alone.

    python benchmarks/kill_storm.py                          # 20 signals on recipes/tiny_cpu.yaml
    python benchmarks/kill_storm.py --signals 5 --seed 1 trainer.max_steps=60

The storm starts `nemo-beyond-nll sft` as a user would, delivers one signal at a random moment,
waits until every process of the run has ended, and runs the same command again; after the last
signal it lets the run finish. Each signal is drawn from:

- SIGKILL to the command (torchrun then stops its workers through its parent-death signal),
- SIGKILL to every process of the run at once (a machine that loses power),
- SIGTERM and SIGINT to the command (a scheduler's stop, Ctrl-C),

at one of these moments: during start-up or resume, during training, inside a checkpoint write
(sent the moment a shard's temporary file exists; a kill is counted as cutting the write when that
file outlives the run), or during the held-out evaluation.

It then compares the storm's run folder with the undisturbed run's: every tensor of every rank's
final checkpoint (model, optimizer, schedule) bit for bit, every record of metrics.jsonl (less its
wall-clock `seconds`, and less the `stopped` records that clean stops add), summary.json and the evaluation samples. It prints a table of the signals and
the verdict, writes them to OUT/kill_storm.json, and exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from nemo_beyond_nll.run_folder import RunFolder
from nemo_beyond_nll.utils.files import read_jsonl
from nemo_beyond_nll.utils.processes import live_processes_naming

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny_cpu.yaml"
# Checkpoints every 10 steps, so a storm meets many saves; saving does not change what is trained.
DEFAULT_OVERRIDES = ["trainer.save_interval=10"]
KINDS = (("SIGKILL", "command"), ("SIGKILL", "every process"), ("SIGTERM", "command"), ("SIGINT", "command"))
MOMENTS = ("start-up", "training", "checkpoint write", "evaluation")
GUARD = 600  # seconds: a hang guard, not a speed expectation
WALL_CLOCK_FIELDS = ("seconds",)
INTERRUPTION_EVENTS = ("stopped",)  # what the storm itself adds to metrics.jsonl: one per clean stop


def start(config: Path, run_dir: Path, overrides: list, log_path: Path) -> subprocess.Popen:
    """The command in its own session, as a user starts it."""
    log = open(log_path, "a")
    return subprocess.Popen([sys.executable, "-m", "nemo_beyond_nll", "sft", "--config", str(config), *overrides,
                             f"checkpoint.dir={run_dir}"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=ROOT)


def processes_of(run_dir: Path) -> list:
    """Pids of live processes whose command line names the run folder (the command, torchrun, workers)."""
    return live_processes_naming(str(run_dir))


def wait_until(predicate, proc: subprocess.Popen, poll: float) -> bool:
    """Poll `predicate` until it holds (True) or the command has exited (False)."""
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    raise TimeoutError("the run neither reached the moment nor ended")


def train_steps(run_dir: Path) -> int:
    """Training records in metrics.jsonl so far (a line being appended may be cut: not counted)."""
    try:
        text = RunFolder(run_dir).metrics.read_text(encoding="utf-8")
    except OSError:
        return 0
    return text.count('"event": "train"')


def writing_checkpoint(run_dir: Path, since: float = 0.0) -> bool:
    """A shard's temporary file made after `since` exists (an earlier kill's leftovers are older)."""
    root = RunFolder(run_dir).checkpoints
    try:
        return any(p.name.endswith(".tmp") and p.stat().st_mtime >= since
                   for step in os.scandir(root) if step.is_dir() for p in os.scandir(step.path))
    except OSError:
        return False


def log_since(log_path: Path, offset: int) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def reach(moment: str, run_dir: Path, proc: subprocess.Popen, rng: random.Random, total_steps: int,
          signals_left: int, log_path: Path, log_offset: int, since: float) -> bool:
    """Wait for `moment` in the run started as `proc`, whose output goes to `log_path` from `log_offset`;
    False if it ended first. A training moment is a step drawn so that the signals left spread over
    the steps left; the evaluation begins when the run prints its progress bar."""
    if moment == "start-up":
        return _sleep_or_exit(proc, rng.uniform(0.2, 4.0))
    if moment == "training":
        done = latest_step(run_dir) or 0
        target = done + rng.randint(1, max(1, 2 * (total_steps - done) // (signals_left + 1)))
        return wait_until(lambda: train_steps(run_dir) >= min(target, total_steps), proc, 0.01)
    if moment == "checkpoint write":
        # the workers are up once a step is recorded: know their pids before the write, not after it
        if not wait_until(lambda: train_steps(run_dir) > (latest_step(run_dir) or 0), proc, 0.01):
            return False
        proc.run_pids = processes_of(run_dir)
        return wait_until(lambda: writing_checkpoint(run_dir, since), proc, 0.0005)
    return wait_until(lambda: "evaluate" in log_since(log_path, log_offset), proc, 0.01)


def _sleep_or_exit(proc: subprocess.Popen, seconds: float) -> bool:
    """Sleep `seconds`; False if the command exited meanwhile."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        return True


def deliver(name: str, target: str, proc: subprocess.Popen, run_dir: Path) -> None:
    signum = getattr(signal, name)
    pids = (getattr(proc, "run_pids", None) or processes_of(run_dir)) if target == "every process" else [proc.pid]
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def wait_for_run_end(proc: subprocess.Popen, run_dir: Path) -> int:
    rc = proc.wait(timeout=GUARD)
    deadline = time.monotonic() + GUARD
    while processes_of(run_dir):
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes of {run_dir} outlived the command")
        time.sleep(0.1)
    return rc


def latest_step(run_dir: Path):
    return RunFolder(run_dir).latest_step()


def storm(config: Path, run_dir: Path, overrides: list, signals: int, total_steps: int, rng: random.Random,
          log_path: Path) -> list:
    """Deliver `signals` signals to successive runs in `run_dir`, then let it finish. Returns one record per run."""
    events = []
    delivered = 0
    while True:
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        since = time.time()
        proc = start(config, run_dir, overrides, log_path)
        if delivered == signals:
            rc = wait_for_run_end(proc, run_dir)
            events.append({"signal": None, "exit_code": rc, "checkpoint_after": latest_step(run_dir)})
            return events
        # While training is left, signals go into it; once trained, into start-up and the evaluation.
        trained = (latest_step(run_dir) or 0) >= total_steps
        (name, target) = rng.choice(KINDS)
        moment = rng.choice(("start-up", "evaluation") if trained else ("start-up",) + ("training", "checkpoint write") * 2)
        reached = reach(moment, run_dir, proc, rng, total_steps, signals - delivered, log_path, log_offset, since)
        if reached:
            deliver(name, target, proc, run_dir)
            delivered += 1
        rc = wait_for_run_end(proc, run_dir)
        # A shard's temporary file outliving the run is proof that the kill cut a checkpoint write.
        events.append({"signal": name if reached else None, "target": target, "moment": moment,
                       "cut_checkpoint_write": reached and writing_checkpoint(run_dir, since), "reached": reached,
                       "exit_code": rc, "checkpoint_after": latest_step(run_dir)})
        print(f"  run {len(events):2d}: {(name + ' to ' + target) if reached else 'no signal (run ended first)':34s} "
              f"at {moment:16s} exit {rc:4d}, checkpoint at step {latest_step(run_dir)}", flush=True)


def tensors_equal(a, b, where: str, differences: list) -> None:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b)):
            differences.append(where)
    elif isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            differences.append(f"{where}: keys {sorted(set(a) ^ set(b), key=str)}")
        for key in set(a) & set(b):
            tensors_equal(a[key], b[key], f"{where}.{key}", differences)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b)):
            tensors_equal(x, y, f"{where}[{index}]", differences)
    elif a != b:
        differences.append(where)


def read_records(path: Path) -> list:
    """The file's records, less wall-clock fields and the records of the interruptions themselves."""
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK_FIELDS} for row in read_jsonl(path)
            if row.get("event") not in INTERRUPTION_EVENTS]


def compare_runs(storm_dir: Path, reference_dir: Path) -> list:
    """What differs between the two run folders' results ([] when bit-identical)."""
    differences = []
    step = latest_step(reference_dir)
    if latest_step(storm_dir) != step:
        return [f"final checkpoint step {latest_step(storm_dir)} != {step}"]
    shards = sorted((RunFolder(reference_dir).checkpoints / f"step_{step:06d}").glob("rank_*.pt"))
    for shard in shards:
        mine = storm_dir / shard.relative_to(reference_dir)
        if not mine.exists():
            differences.append(f"{mine} missing")
            continue
        tensors_equal(torch.load(mine, weights_only=True), torch.load(shard, weights_only=True), shard.name, differences)
    storm, reference = RunFolder(storm_dir), RunFolder(reference_dir)
    for name in ("metrics", "samples"):
        path = getattr(reference, name)
        if read_records(getattr(storm, name)) != read_records(path):
            differences.append(str(path.relative_to(reference_dir)))
    if json.loads(storm.summary.read_text()) != json.loads(reference.summary.read_text()):
        differences.append(reference.summary.name)
    return differences


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=RECIPE)
    parser.add_argument("--signals", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="draws the signals and their moments")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "kill_storm")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for both runs (key=value)")
    args = parser.parse_args(argv)
    if args.signals < 1:
        parser.error("--signals must be at least 1")
    overrides = DEFAULT_OVERRIDES + args.overrides
    args.out.mkdir(parents=True, exist_ok=True)
    reference, stormed = args.out / "reference", args.out / "storm"
    for folder in (reference, stormed):
        if folder.exists():
            parser.error(f"{folder} exists: the storm needs fresh folders (another --out, or remove it)")

    print(f"undisturbed run in {reference}", flush=True)
    began = time.monotonic()
    proc = start(args.config, reference, overrides, args.out / "reference.log")
    if wait_for_run_end(proc, reference) != 0:
        print(f"kill_storm: error: the undisturbed run failed (log: {args.out / 'reference.log'})", file=sys.stderr)
        return 2
    undisturbed_s = time.monotonic() - began

    print(f"storm of {args.signals} signals in {stormed}", flush=True)
    began = time.monotonic()
    events = storm(args.config, stormed, overrides, args.signals, latest_step(reference), random.Random(args.seed),
                   args.out / "storm.log")
    storm_s = time.monotonic() - began
    final = events[-1]
    differences = compare_runs(stormed, reference) if final["exit_code"] == 0 else ["the last run failed"]
    report = {
        "signals": sum(e["signal"] is not None for e in events),
        "by_signal": {name: sum(e["signal"] == name for e in events) for name in ("SIGKILL", "SIGTERM", "SIGINT")},
        "cut_checkpoint_write": sum(bool(e.get("cut_checkpoint_write")) for e in events),
        "by_moment": {m: sum(e["signal"] is not None and e.get("moment") == m for e in events) for m in MOMENTS},
        "runs": len(events), "undisturbed_s": round(undisturbed_s, 1), "storm_s": round(storm_s, 1),
        "bit_identical": not differences, "differences": differences[:20], "events": events,
        "overrides": overrides, "seed": args.seed,
    }
    (args.out / "kill_storm.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['signals']} signals ({report['by_signal']}), {report['cut_checkpoint_write']} of them cut a "
          f"checkpoint write, {report['runs']} runs in {storm_s:.0f} s (undisturbed: {undisturbed_s:.0f} s)")
    if differences:
        print("DIFFERS from the undisturbed run: " + "; ".join(differences[:20]))
        return 1
    print("final weights, optimizer state, metrics and evaluation: bit-identical to the undisturbed run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
