"""What the real-package tiers (tests/bridge, tests/automodel) do at collection: mark their tests,
and, where the tier's package cannot be imported (the default environment), report each test file
skipped without importing it, since a test file may import the tier's package at its top."""

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


class SkippedTierFile(pytest.File):
    """A tier's test file outside the tier's environment: reported skipped, never imported."""

    why = ""

    def collect(self):
        pytest.skip(f"{self.nodeid}: {self.why}")


def tier_test_files(module: str, why: str):
    """A `pytest_pycollect_makemodule` hook for a tier's conftest.py: without `module`, each test file
    of the folder is reported skipped, saying `why` (name the tier's run.sh there); with it, pytest
    collects the files as usual."""
    available = importable(module)

    def pytest_pycollect_makemodule(module_path, parent):
        if available:
            return None
        skipped = SkippedTierFile.from_parent(parent, path=module_path)
        skipped.why = why
        return skipped

    return pytest_pycollect_makemodule
