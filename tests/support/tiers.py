"""What both real-package tiers (tests/bridge, tests/automodel) do at collection: mark their tests,
and skip them where the tier's package cannot be imported (the default environment)."""

import importlib.util
from pathlib import Path

import pytest


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def mark_tier(items, folder: Path, marker: str, module: str, why: str) -> None:
    """Mark every test under `folder` with `marker`; skip them all (saying `why`) without `module`."""
    skip = None if importable(module) else pytest.mark.skip(reason=why)
    for item in items:
        if folder in Path(str(item.fspath)).parents:
            item.add_marker(getattr(pytest.mark, marker))
            if skip:
                item.add_marker(skip)
