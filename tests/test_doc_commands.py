"""Every `nemo-beyond-nll` command in a code block of README.md or docs/*.md (and every
`recipes/launch/torchrun.sh RECIPE [overrides]` line, which runs `sft`) parses with the command's own
argument parser, and its recipe and overrides load and validate, in this process. A command that
cannot be checked as written (a placeholder, a shell variable) is named below with the reason; an
entry that no longer matches a command fails, so the list cannot go stale."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from nemo_beyond_nll.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
SEPARATORS = {"&&", "||", "|", ";", "done"}

# Commands written with a placeholder, checked elsewhere or not checkable here: the command as
# extracted (words joined by one space) -> why it is not loaded.
NOT_LOADED = {
    "nemo-beyond-nll import --config $r":
        "a shell loop over recipes/paper/*_*.yaml; every paper recipe loads in tests/test_paper_recipes.py",
}

RECIPE_COMMANDS = {"sft", "eval", "import", "probe", "continuum"}


def cli_parser() -> argparse.ArgumentParser:
    """The CLI's own parser (`nemo_beyond_nll.cli.build_parser`)."""
    from nemo_beyond_nll import cli

    build = getattr(cli, "build_parser", None)
    if build is None:
        pytest.fail("nemo_beyond_nll.cli has no build_parser(): point tests/test_doc_commands.py at the "
                    "function that now builds the command's argparse parser")
    return build()


def shell_blocks(text: str):
    """The text of each fenced code block tagged bash, sh, shell or console."""
    blocks, lang, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                if lang in SHELL:
                    blocks.append("\n".join(lines))
                lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def commands():
    """(page, command words) for each command in a shell code block of the README and the guides."""
    found = []
    for page in PAGES:
        for block in shell_blocks(page.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                if "nemo-beyond-nll" not in line and "torchrun.sh" not in line:
                    continue
                words = shlex.split(line, comments=True)
                for start, word in enumerate(words):
                    if word == "nemo-beyond-nll" and start + 1 < len(words):
                        argv = words[start + 1:]
                    elif word.endswith("recipes/launch/torchrun.sh") and start + 1 < len(words):
                        argv = ["sft", "--config", *words[start + 1:]]
                    else:
                        continue
                    cut = [argv.index(s) for s in SEPARATORS if s in argv]
                    argv = argv[:min(cut)] if cut else argv
                    if argv and argv[-1].endswith(";"):
                        argv[-1] = argv[-1][:-1]
                    found.append((page.relative_to(ROOT).as_posix(), argv))
    return found


def parse(parser: argparse.ArgumentParser, argv):
    """As the command parses: overrides after options join the overrides."""
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit:
        raise AssertionError(f"the CLI's parser refuses: nemo-beyond-nll {' '.join(argv)}") from None
    if unknown:
        assert hasattr(args, "overrides") and not any(w.startswith("-") for w in unknown), \
            f"unrecognized arguments: {' '.join(unknown)}"
        args.overrides = [*args.overrides, *unknown]
    return args


def load(args) -> None:
    """What the command resolves before it starts any process: the recipe with its overrides."""
    if args.command in RECIPE_COMMANDS:
        load_recipe(args.config, args.overrides)
    elif args.command == "reproduce" and args.table != "quantiles":
        from nemo_beyond_nll import reproduce

        assert reproduce.table_jobs(args.table, extra=args.overrides, objectives=reproduce.objectives_arg(args.objectives))
    elif args.command == "reproduce":
        from nemo_beyond_nll import reproduce

        spec = reproduce.quantile_spec()
        load_recipe(args.config or reproduce.PAPER_DIR / f"{spec['recipe']}.yaml", args.overrides)
    # data and compare: the parser checks the domain, the options and their types; they read no recipe


def test_every_documented_command_parses_and_loads():
    found = commands()
    parser = cli_parser()
    pages = {page for page, _ in found}
    assert {"README.md", "docs/gpu-recipes.md", "docs/probe.md", "docs/reproducing.md",
            "docs/data-and-evaluation.md", "docs/run-folder.md"} <= pages, pages
    checked, skipped, failures = 0, set(), []
    for page, argv in found:
        text = " ".join(["nemo-beyond-nll", *argv])
        if text in NOT_LOADED:
            skipped.add(text)
            continue
        try:
            load(parse(parser, argv))
            checked += 1
        except Exception as err:  # noqa: BLE001 - every failure is reported with its page and command
            failures.append(f"{page}: {text}\n    {type(err).__name__}: {err}")
    assert not failures, "documented commands that do not load:\n" + "\n".join(failures)
    assert skipped == set(NOT_LOADED), f"stale NOT_LOADED entries: {set(NOT_LOADED) - skipped}"
    assert checked >= 30, checked
