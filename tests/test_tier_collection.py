"""The real-package tiers' folders, collected outside their environments, report each test file
skipped (naming the tier's run.sh) instead of erroring on their imports of the tier's package."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The tiers' packages made unimportable in the child, as in the default environment.
HIDE_TIER_PACKAGES = "import sys; sys.modules['nemo_automodel'] = sys.modules['megatron.bridge'] = None\n"
TIERS = {"automodel": "bash tests/automodel/run.sh", "bridge": "bash tests/bridge/run.sh"}


def test_tier_folders_collect_as_skips_outside_their_environments():
    args = ["--collect-only", "-q", "-rs", "-p", "no:cacheprovider", *(f"tests/{tier}" for tier in TIERS)]
    code = HIDE_TIER_PACKAGES + f"import pytest; sys.exit(pytest.main({args!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, output
    assert "error" not in output.lower(), output
    skipped = [line for line in output.splitlines() if line.startswith("SKIPPED [1] ")]
    for tier, run_sh in TIERS.items():
        test_files = sorted((ROOT / "tests" / tier).glob("test_*.py"))
        assert test_files, tier
        for path in test_files:
            lines = [line for line in skipped if f"tests/{tier}/{path.name}: " in line]
            assert len(lines) == 1 and run_sh in lines[0], (path, output)
