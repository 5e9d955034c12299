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
import json
import sys

from . import engines, reproduce
from .config import ConfigError
from .recipe import input_problems, load_recipe, resolved_yaml
from .run_folder import RunRefused, held_output

EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


# name: (the Engine method that runs it, help)
RECIPE_COMMANDS = {
    "sft": ("sft", "fine-tune with the recipe's objective"),
    "eval": ("eval", "evaluate the recipe's fine-tuned model"),
    "import": ("import_backbone", "convert the recipe's Hugging Face backbone to Megatron"),
    "probe": ("probe", "place the base model on the continuum and recommend an objective"),
    "continuum": ("continuum", "run the CPU capability-continuum experiment"),
}


def run_recipe_command(args) -> int:
    cfg = load_recipe(args.config, args.overrides)
    engine = engines.engine_for(cfg)
    engine.check(cfg, args.command)
    problems = input_problems(cfg, args.command)  # the files it reads, before any process starts
    if args.dry_run:
        # Printed part by part, so what is known before Megatron-Bridge runs is out even if it fails.
        print(resolved_yaml(cfg), end="", flush=True)
        for problem in problems:  # on a cluster the files may exist only there: a warning here
            print(f"# warning: {problem}", flush=True)
        for part in engine.dry_run(cfg, args.command):
            print(part, end="", flush=True)
        return 0
    if problems:
        raise CLIError(problems[0])
    return getattr(engine, RECIPE_COMMANDS[args.command][0])(cfg)


def cmd_compare(args) -> int:
    from .eval.compare import compare_runs

    try:
        table = compare_runs(args.run_dirs, args.out)
    except ValueError as err:
        raise CLIError(str(err)) from None
    print(table)
    print(f"wrote {args.out}/comparison.md, comparison.csv and comparison.png", file=sys.stderr)
    return 0


def _built(domain: str, out: str, build_call):
    """The report of a data build, with `out` locked for it; its failures as one-line CLI errors."""
    try:
        with held_output(out):  # a second build into `out` fails at once (RunLocked) naming this one
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
    report = _built(args.domain, out, lambda: build_paper(
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
    report = _built(args.domain, out, lambda: build(args.domain, args.source, out, **options))
    print(json.dumps({k: report[k] for k in ("rows_read", "kept", "train", "validation", "dropped") if k in report}, indent=2))
    print(f"wrote {out}/train.jsonl, validation.jsonl and report.json", file=sys.stderr)
    return 0


def cmd_reproduce(args) -> int:
    """`reproduce TABLE`: every job of one of the paper's tables (reproduce.py), listed, run or compared."""
    if args.table == reproduce.QUANTILES:
        if args.objectives:
            raise CLIError("--objectives belongs to the tables; the quantile ablation's objectives are in published.yaml")
        return reproduce.reproduce_quantiles(config=args.config, overrides=args.overrides, dry_run=args.dry_run,
                                             compare=args.compare, out=args.out)
    if args.config:
        raise CLIError("--config belongs to `reproduce quantiles`; a table's recipes are listed in recipes/paper/published.yaml")
    return reproduce.reproduce_table(args.table, overrides=args.overrides, objectives=args.objectives,
                                     dry_run=args.dry_run, compare=args.compare, out=args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nemo-beyond-nll", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, text) in RECIPE_COMMANDS.items():
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
    p.add_argument("table", choices=[*reproduce.TABLES, reproduce.QUANTILES])
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
    except (ConfigError, CLIError, RunRefused) as err:
        print(f"nemo-beyond-nll: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
