"""The README's plain-PyTorch example runs verbatim, without nemo."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- tests/test_readme.py runs this block"
# Makes `import nemo` fail in the child, as on a machine without nemo_toolkit.
NO_NEMO = "import sys; sys.modules['nemo'] = None\n"


def readme_blocks():
    text = README.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(re.escape(MARK) + r"[^\n]*\n```python\n(.*?)```", text, re.S)]


def test_plain_pytorch_example_runs_without_nemo():
    blocks = readme_blocks()
    assert len(blocks) == 1, "the README's tested example block is missing"
    proc = subprocess.run([sys.executable, "-c", NO_NEMO + blocks[0]], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"loss \d\.\d{4}, kept \d+ of 12 tokens", proc.stdout), proc.stdout
