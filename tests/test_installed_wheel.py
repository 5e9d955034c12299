"""The package works installed from its wheel, away from the source tree: `reproduce` finds the
paper's recipes and published.yaml inside the installed package."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, cwd, env=None):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def test_reproduce_reads_the_paper_recipes_from_an_installed_wheel(tmp_path):
    # the wheel is built from a copy of what setup.py packages, so no build output lands in the tree
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "nemo_beyond_nll", source / "nemo_beyond_nll",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(source)], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("nemo_beyond_nll-*.whl")

    # system site packages give torch, omegaconf and the rest without a download; the venv's own
    # site-packages come first, so the package imported is the wheel's
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"  # no recipes/ folder here, and the source tree off the path
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([python, "-c", "import nemo_beyond_nll.reproduce as r; print(r.__file__); print(r.PAPER_DIR)"],
                cwd=elsewhere, env=env).split()
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=elsewhere,
                    env=env).strip())
    assert all(Path(p).is_relative_to(site) for p in where), where

    out = run([python, "-m", "nemo_beyond_nll", "reproduce", "math", "--dry-run"], cwd=elsewhere, env=env)
    # every backbone of the math table, with the paper's figures read from the packaged published.yaml
    for recipe in ("qwen2.5-math-1.5b_math", "qwen2.5-math-7b_math", "llama3.1-8b_math", "deepseek-math-7b_math"):
        assert f"--config {Path(where[1]) / recipe}.yaml" in out, recipe
    assert "# paper: Math500 " in out
