"""`nemo-beyond-nll`: fine-tune and evaluate with a probability objective. This module only wires.

    nemo-beyond-nll sft  --config recipes/tiny_cpu.yaml [--dry-run] [key=value ...]
    nemo-beyond-nll eval --config recipes/tiny_cpu.yaml [--dry-run] [key=value ...]
    nemo-beyond-nll import --config recipes/qwen2.5-math-1.5b_math.yaml   (GPU recipes, once)
    nemo-beyond-nll probe --config RECIPE.yaml         (where the base model sits; which objective)
    nemo-beyond-nll continuum --config recipes/continuum_cpu.yaml
    nemo-beyond-nll compare runs/a runs/b [--out DIR]
    nemo-beyond-nll reproduce math|medical|figfont|quantiles [--dry-run] [--compare]   (the paper's tables, recipes/paper/)
    nemo-beyond-nll data math|medical|figfont [--source S] [--out DIR] [--protocol paper --family F]

Overrides use Hydra's grammar: `model.loss=neg_p_threshold model.loss_args.threshold=0.1`, `~key`.
The recipe schema fixes every key; new keys only inside `model.loss_args` and `eval.benchmark_files`.
A bad config, override or input file (data, benchmarks, backbone folder, run folders) is a one-line
error with exit code 2, before any process starts.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from .config import ConfigError
from .recipe import input_problems, load_recipe, resolved_yaml
from .utils.run_lock import RunLocked

EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


# Keys a run's checkpoint depends on: a rerun in the same folder must not change them once it has one.
FIXED_FOR_WEIGHTS = ("engine", "model.tensor_parallel", "model.seq_length", "model.tiny", "model.hf_path")
FIXED_FOR_TRAINING = FIXED_FOR_WEIGHTS + ("model.loss", "model.loss_args", "model.pretrained_checkpoint", "data",
                                          "trainer.seed", "trainer.global_batch_size")
TRAINING_MODES = ("train", "continuum")


def hold_run_lock(run_dir: Path) -> int:
    """Lock the run folder for this process's lifetime (RunLocked, a one-line error with exit 2, if
    another run holds it). Under torchrun (the Bridge engine) only global rank 0 locks and writes the
    config; returns -1 on the other ranks."""
    from .utils.run_lock import acquire_on_rank_zero

    return acquire_on_rank_zero(run_dir, shlex.join(["nemo-beyond-nll", *sys.argv[1:]]))


def _flat(tree, prefix: str = "") -> dict:
    """{dotted key: leaf} of a nested dict (an empty dict is a leaf)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_changes(old: dict, new: dict) -> dict:
    """{dotted key: (old, new)} for every leaf that differs between two config trees."""
    a, b = _flat(old), _flat(new)
    return {key: (a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def _has_checkpoint(run_dir: Path) -> bool:
    root = run_dir / "checkpoints"
    return root.is_dir() and any(root.iterdir())


def _write_run_config(cfg, mode=None) -> Path:
    """Lock the run folder, sweep what killed runs left, and write `config.yaml` (the config of this run).

    A rerun in a folder that already holds a config keeps it: the earlier one moves to
    `config.<n>.yaml`, `config_history.jsonl` records every changed key, and each change is printed
    on one line. Changes to keys the checkpoint depends on are refused (exit 2) before anything is written.
    """
    from omegaconf import OmegaConf

    from .utils.files import atomic_write_text, remove_stale_temporaries

    run_dir = Path(cfg.checkpoint.dir)
    if hold_run_lock(run_dir) < 0:
        return run_dir  # another rank of this run writes it
    remove_stale_temporaries(run_dir)
    text = OmegaConf.to_yaml(cfg, resolve=True)
    path = run_dir / "config.yaml"
    old_text = path.read_text(encoding="utf-8") if path.exists() else None
    if old_text is not None and old_text != text:
        old = OmegaConf.to_container(OmegaConf.create(old_text))
        changes = config_changes(old, OmegaConf.to_container(cfg, resolve=True))
        if _has_checkpoint(run_dir):
            fixed = FIXED_FOR_TRAINING if mode in TRAINING_MODES else FIXED_FOR_WEIGHTS
            refused = [k for k in changes if any(k == f or k.startswith(f + ".") for f in fixed)]
            if refused:
                raise CLIError(f"{run_dir} holds a checkpoint trained with other values of "
                               + ", ".join(f"{k} ({changes[k][0]!r} -> {changes[k][1]!r})" for k in refused)
                               + ": give this run another checkpoint.dir (model.pretrained_checkpoint="
                               + f"{run_dir} starts from its weights)")
        n = 1
        while (run_dir / f"config.{n}.yaml").exists():
            n += 1
        atomic_write_text(run_dir / f"config.{n}.yaml", old_text)
        record = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "command": mode, "previous": f"config.{n}.yaml",
                  "changes": {k: list(v) for k, v in changes.items()}}
        with open(run_dir / "config_history.jsonl", "a", encoding="utf-8") as history:
            history.write(json.dumps(record, default=str) + "\n")
        for key, (before, after) in changes.items():
            print(f"nemo-beyond-nll: {run_dir}: {key}: {before!r} -> {after!r} (earlier config kept as config.{n}.yaml)",
                  file=sys.stderr)
    atomic_write_text(path, text)
    return run_dir


def _latest_cpu_step(run_dir: Path):
    pointer = run_dir / "checkpoints" / "latest"
    try:
        return int(pointer.read_text().strip())
    except (OSError, ValueError):
        return None


def _check_resumable(cfg, run_dir: Path) -> None:
    """Refuse a rerun whose trainer.max_steps lies behind the run's checkpoint (before any worker starts)."""
    done, steps = _latest_cpu_step(run_dir), cfg.trainer.max_steps
    if done is not None and steps is not None and done > steps:
        raise CLIError(f"{run_dir} holds a checkpoint at step {done}, past trainer.max_steps={steps}: "
                       f"evaluate it with `nemo-beyond-nll eval`, continue with trainer.max_steps>={done}, "
                       f"or start a new run with another checkpoint.dir")


def _launch_cpu_workers(cfg, mode: str) -> int:
    """Start one gloo worker per tensor-parallel rank under torchrun and wait for them.

    The run folder stays locked while torchrun lives (it inherits the lock's open file). torchrun runs
    in its own session with the parent-death signal armed: if this process is killed, even with
    SIGKILL, torchrun gets SIGTERM and stops its workers (which in turn die if torchrun dies).
    SIGTERM, SIGINT or SIGHUP here is forwarded once as SIGTERM (a second one kills torchrun);
    training workers finish the current step, save a checkpoint and exit; the exit code is 128+signal.
    """
    from .utils.processes import arm_parent_death_signal

    from .data.pipeline import IncompleteData, check_complete

    for split in ("train", "validation"):  # before the lock: a refused run leaves no trace
        try:
            if cfg.data.get(split):
                check_complete(cfg.data[split])
        except IncompleteData as err:
            raise CLIError(str(err)) from None
    run_dir = Path(cfg.checkpoint.dir)
    lock_fd = hold_run_lock(run_dir)
    if mode == "train":
        _check_resumable(cfg, run_dir)
    _write_run_config(cfg, mode)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={cfg.model.tensor_parallel}", "-m", "nemo_beyond_nll.engines.cpu.worker",
           str(run_dir / "config.yaml"), mode]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore"),
           "TORCHELASTIC_ERROR_FILE": str(run_dir / "worker_error.json")}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, pass_fds=(lock_fd,) if lock_fd >= 0 else (),
                            preexec_fn=functools.partial(arm_parent_death_signal, signal.SIGTERM, os.getpid()))
    received = []

    def forward(signum, _frame):
        received.append(signum)
        if len(received) == 1:
            print(f"nemo-beyond-nll: {signal.Signals(signum).name}: stopping after the current step "
                  f"(again to stop at once)", file=sys.stderr, flush=True)
        try:
            os.kill(proc.pid, signal.SIGTERM if len(received) == 1 else signal.SIGKILL)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not received:
        return code
    name = signal.Signals(received[0]).name
    done = _latest_cpu_step(run_dir)
    where = (f"; checkpoint at step {done} in {run_dir}: run the same command to resume"
             if mode in TRAINING_MODES and done is not None else "")
    print(f"nemo-beyond-nll: stopped by {name}{' (twice: at once)' if len(received) > 1 else ''}{where}",
          file=sys.stderr)
    return 128 + received[0]


def _bridge():
    from .engines.bridge import finetune as bridge  # pure Python until a command runs; Megatron-Bridge is imported inside

    return bridge


def run_sft(cfg) -> int:
    if cfg.engine == "cpu":
        return _launch_cpu_workers(cfg, "train")
    return _bridge().run_sft(cfg)


def run_eval(cfg) -> int:
    if cfg.engine == "cpu":
        if not (Path(cfg.checkpoint.dir) / "checkpoints" / "latest").exists():
            raise CLIError(f"no checkpoint in {cfg.checkpoint.dir}: run `nemo-beyond-nll sft` with this config first")
        return _launch_cpu_workers(cfg, "eval")
    from .eval.backends import BackendUnavailable, run_gpu_eval

    try:
        return run_gpu_eval(cfg)
    except BackendUnavailable as err:  # vLLM, Megatron-Bridge or transformers missing
        raise CLIError(str(err)) from None


def run_import(cfg) -> int:
    print(f"imported {cfg.model.hf_path} -> {_bridge().import_checkpoint(cfg)}")
    return 0


def run_probe(cfg) -> int:
    if cfg.engine == "cpu":
        return _launch_cpu_workers(cfg, "probe")
    from .engines.bridge.probe import run_bridge_probe

    _write_run_config(cfg)
    return run_bridge_probe(cfg)


def run_continuum(cfg) -> int:
    if cfg.engine != "cpu":
        raise CLIError("continuum runs the cpu engine; use a recipe with engine: cpu")
    return _launch_cpu_workers(cfg, "continuum")


def check_import(cfg) -> None:
    if cfg.engine != "bridge":
        raise CLIError("import converts a Hugging Face backbone for engine=bridge; this recipe trains from scratch")


def describe_sft(cfg):
    return _bridge().describe_parts(cfg) if cfg.engine == "bridge" else ""


def describe_eval(cfg) -> str:
    if cfg.engine != "bridge":
        return ""
    from .eval.backends import describe_gpu_eval

    return describe_gpu_eval(cfg)


def describe_import(cfg) -> str:
    return f"# would import {cfg.model.hf_path} -> {_bridge().run_paths(cfg)['pretrained']}\n"


# name: (run, help, check before a dry run, extra text of a dry run: a string or its parts)
RECIPE_COMMANDS = {
    "sft": (run_sft, "fine-tune with the recipe's objective", None, describe_sft),
    "eval": (run_eval, "evaluate the recipe's fine-tuned model", None, describe_eval),
    "import": (run_import, "convert the recipe's Hugging Face backbone to Megatron", check_import, describe_import),
    "probe": (run_probe, "place the base model on the continuum and recommend an objective", None, None),
    "continuum": (run_continuum, "run the CPU capability-continuum experiment", None, None),
}


def run_recipe_command(args) -> int:
    run, _, check, describe = RECIPE_COMMANDS[args.command]
    cfg = load_recipe(args.config, args.overrides)
    if check:
        check(cfg)
    problems = input_problems(cfg, args.command)  # the files it reads, before any process starts
    if args.dry_run:
        # Printed part by part, so what is known before Megatron-Bridge runs is out even if it fails.
        print(resolved_yaml(cfg), end="", flush=True)
        for problem in problems:  # on a cluster the files may exist only there: a warning here
            print(f"# warning: {problem}", flush=True)
        extra = describe(cfg) if describe else ""
        for part in [extra] if isinstance(extra, str) else extra:
            print(part, end="", flush=True)
        return 0
    if problems:
        raise CLIError(problems[0])
    return run(cfg)


def cmd_compare(args) -> int:
    from .eval.compare import compare_runs

    try:
        table = compare_runs(args.run_dirs, args.out)
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(table)
    print(f"wrote {args.out}/comparison.md, comparison.csv and comparison.png", file=sys.stderr)
    return 0


def _built(domain: str, build_call):
    """The report of a data build; its failures as one-line CLI errors."""
    try:
        return build_call()
    except OSError as err:  # an unreachable hub, a missing file
        raise CLIError(f"cannot read the {domain} source: {str(err).splitlines()[0]}") from None
    except ValueError as err:
        raise CLIError(str(err)) from None


def cmd_data_paper(args) -> int:
    """`data DOMAIN --protocol paper`: the rows as the paper's runs built them (domains.paper)."""
    from .data import hf_chat_template
    from .domains.paper import build_paper, family_of

    tokenizer = None
    if args.tokenizer:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise CLIError("--tokenizer needs the transformers package (pip install transformers)") from None
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    family = args.family or (family_of(args.tokenizer) if args.tokenizer else None)
    if family is None:
        raise CLIError("--protocol paper needs --family (qwen, llama or deepseek) or --tokenizer (the backbone's id)")
    if args.max_length and tokenizer is None:
        raise CLIError("--max-length needs --tokenizer (the backbone's Hugging Face id)")
    if args.test_size is not None and (args.domain != "figfont" or args.test_size < 1):
        raise CLIError(f"--test-size takes a number >= 1 and applies to figfont only, got {args.test_size} for {args.domain}")
    out = args.out or f"data/paper/{args.domain}_{family}"
    report = _built(args.domain, lambda: build_paper(
        args.domain, args.source, out, family=family,
        chat_template=hf_chat_template(tokenizer) if tokenizer is not None else None,
        tokenizer=tokenizer if args.max_length else None, max_length=args.max_length, limit=args.limit,
        test_limit=args.test_size))
    print(json.dumps({k: report[k] for k in ("rows_read", "kept", "train", "dropped", "notes") if k in report}, indent=2))
    print(f"wrote {out}/train.jsonl and report.json", file=sys.stderr)
    return 0


def cmd_data(args) -> int:
    if getattr(args, "protocol", "ours") == "paper":
        return cmd_data_paper(args)
    from .data import hf_chat_template
    from .domains import build

    options = {k: v for k, v in (("limit", args.limit), ("max_length", args.max_length)) if v is not None}
    if args.domain == "figfont":
        options.update(size=args.size, seed=args.seed)
    if args.tokenizer:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise CLIError("--tokenizer needs the transformers package (pip install transformers)") from None
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        options["tokenizer"] = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
        if args.chat_template:
            options["chat_template"] = hf_chat_template(tokenizer)
    elif args.chat_template or args.max_length:
        raise CLIError("--chat-template and --max-length need --tokenizer (the backbone's Hugging Face id)")
    out = args.out or f"data/{args.domain}"
    report = _built(args.domain, lambda: build(args.domain, args.source, out, **options))
    print(json.dumps({k: report[k] for k in ("rows_read", "kept", "train", "validation", "dropped") if k in report}, indent=2))
    print(f"wrote {out}/train.jsonl, validation.jsonl and report.json", file=sys.stderr)
    return 0


def _objectives_arg(value):
    """--objectives: None (the paper's), "all", or a comma-separated list of keys."""
    if value is None or value == "all":
        return value
    return [key.strip() for key in value.split(",") if key.strip()]


def _print_jobs(jobs, figures=None) -> None:
    """The dry run of `reproduce`: per job, its state, folder, the paper's figures (or `figures`),
    command and config."""
    from . import reproduce

    for job in jobs:
        state = "done" if job.done else "to run"
        print(f"## {job.label}  [{state}]  {job.run_dir}\n# paper: {figures or job.published_figures}\n# {job.command}")
        print(resolved_yaml(job.cfg), end="", flush=True)
    print(f"# {reproduce.job_counts(jobs)}", file=sys.stderr)


def cmd_reproduce(args) -> int:
    """`reproduce TABLE`: every job of one of the paper's tables (reproduce.py), listed, run or compared."""
    from . import reproduce

    if args.table == "quantiles":
        return cmd_reproduce_quantiles(args)
    if args.config:
        raise CLIError("--config belongs to `reproduce quantiles`; a table's recipes are listed in recipes/paper/published.yaml")
    jobs = reproduce.table_jobs(args.table, extra=args.overrides, objectives=_objectives_arg(args.objectives))
    if args.dry_run:
        _print_jobs(jobs)
        return 0
    out = args.out or f"runs/paper/{args.table}/comparison"
    if not args.compare:
        reproduce.run_jobs(jobs, run_sft, run_eval, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(reproduce.compare_table(args.table, jobs, out))
    print(f"wrote {out}/paper_comparison.md, .csv and .png (and comparison.* of the finished runs)", file=sys.stderr)
    return 0


def cmd_reproduce_quantiles(args) -> int:
    """`reproduce quantiles`: probe the base model on the training data, take the percentiles of its
    target-token probabilities as thresholds, and list (--dry-run) or run the top/bottom jobs."""
    from . import reproduce

    spec = reproduce.quantile_spec()
    if args.objectives:
        raise CLIError("--objectives belongs to the tables; the quantile ablation's objectives are in published.yaml")
    recipe = Path(args.config) if args.config else reproduce.PAPER_DIR / f"{spec['recipe']}.yaml"
    cfg = load_recipe(recipe, args.overrides)
    folder = reproduce.probe_dir(cfg)
    ours = reproduce.read_percentiles(folder)
    published = {int(q): float(v) for q, v in spec["published"].items()}
    if ours is None and args.dry_run and cfg.engine != "cpu":
        # A dry run starts no GPU work: plan with the authors' values, and say so.
        print(f"# the base model is not probed yet ({folder}/{reproduce.PROBE_FILE}); the thresholds below are the "
              f"authors' percentiles for {spec['recipe']}: `reproduce quantiles` without --dry-run probes first",
              file=sys.stderr)
        thresholds = published
    else:
        if ours is None:
            probe_cfg = load_recipe(recipe, [*args.overrides, f"checkpoint.dir={folder}"])
            problems = input_problems(probe_cfg, "probe")
            if problems:
                raise CLIError(problems[0])
            print(f"probing the base model on the training data into {folder}", file=sys.stderr, flush=True)
            code = run_probe(probe_cfg)
            if code:
                return code
            ours = reproduce.read_percentiles(folder)
        reproduce.write_quantiles(folder, ours, spec, recipe.stem)
        print(reproduce.percentile_table(ours, published, recipe.stem, spec["recipe"]), file=sys.stderr)
        thresholds = ours
    jobs = reproduce.quantile_jobs(recipe, thresholds, extra=args.overrides)
    if args.dry_run:
        _print_jobs(jobs, "none printed (the paper draws this ablation as a figure, Figure 5)")
        return 0
    if not args.compare:
        reproduce.run_jobs(jobs, run_sft, run_eval, log=lambda line: print(line, file=sys.stderr, flush=True))
    finished = [job.run_dir for job in jobs if job.done]
    if not finished:
        raise CLIError("no quantile job has finished yet: nothing to compare")
    from .eval.compare import compare_runs

    out = args.out or str(folder / "comparison")
    print(compare_runs(finished, out))
    print(f"wrote {out}/comparison.md, comparison.csv and comparison.png", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nemo-beyond-nll", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, text, _, _) in RECIPE_COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", required=True, help="recipe YAML")
        p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
        p.add_argument("overrides", nargs="*", help="Hydra-style overrides, e.g. model.loss=neg_p")
        p.set_defaults(func=run_recipe_command)
    p = sub.add_parser("data", help="build a domain's SFT files (prompt/completion JSONL, train/validation)")
    p.add_argument("domain", choices=["math", "medical", "figfont"])
    p.add_argument("--source", help="hub id, or a local .jsonl/.json/.parquet file or folder (default: the "
                                    "domain's dataset; figfont is generated)")
    p.add_argument("--out", help="output folder (default: data/<domain>, where the recipes read)")
    p.add_argument("--tokenizer", help="Hugging Face id of the backbone, for the length filter and chat template")
    p.add_argument("--max-length", type=int, help="drop rows longer than this many tokens")
    p.add_argument("--chat-template", action="store_true", help="wrap prompts in the tokenizer's chat template")
    p.add_argument("--limit", type=int, help="read at most this many rows")
    p.add_argument("--size", type=int, default=20000, help="figfont: puzzles to generate")
    p.add_argument("--seed", type=int, default=0, help="figfont: generator seed")
    p.add_argument("--protocol", choices=["ours", "paper"], default="ours",
                   help="paper: the rows of the paper's runs (the authors' hub subsets, their prompts and "
                        "targets; --max-length then cuts long rows at their end); see nemo_beyond_nll.domains.paper")
    p.add_argument("--test-size", type=int, help="--protocol paper, figfont: test puzzles (default 5000, the authors' "
                                                 "set; 20000 with --source generate is the paper's count)")
    p.add_argument("--family", choices=["qwen", "llama", "deepseek"],
                   help="--protocol paper: the backbone family whose prompt format to use (default: from --tokenizer)")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("reproduce", help="run (or list, --dry-run) every job of one of the paper's tables, "
                                          "or its quantile ablation")
    p.add_argument("table", choices=["math", "medical", "figfont", "quantiles"])
    p.add_argument("--dry-run", action="store_true", help="list every job with its resolved config and the "
                                                          "paper's figures it is compared with, and exit")
    p.add_argument("--compare", action="store_true", help="run nothing: compare the finished jobs with the paper")
    p.add_argument("--objectives", help="add rows the paper does not have: 'all', or keys of published.yaml's "
                                        "objectives, comma-separated (default: the paper's objectives only)")
    p.add_argument("--config", help="quantiles: the recipe whose base model is probed (default: the paper's, "
                                    "Qwen2.5-Math-1.5B on math)")
    p.add_argument("--out", help="where to write the comparison (default: runs/paper/<table>/comparison)")
    p.add_argument("overrides", nargs="*", help="Hydra-style overrides applied to every job")
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("compare", help="one table of objectives against benchmarks over run directories")
    p.add_argument("run_dirs", nargs="+", help="run directories, each with a summary.json")
    p.add_argument("--out", default="runs/comparison", help="where to write the table and chart")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # argparse gives a second positional list only the words before the first option
    # (`reproduce math --dry-run a=b`): overrides after options join the rest.
    if unknown and hasattr(args, "overrides") and not any(word.startswith("-") for word in unknown):
        args.overrides = [*args.overrides, *unknown]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except (ConfigError, CLIError, RunLocked) as err:
        print(f"nemo-beyond-nll: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
