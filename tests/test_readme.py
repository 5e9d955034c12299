"""The README's plain-PyTorch example runs verbatim, without nemo; its loss-class table names real
constructors; its figures are the regenerated ones."""

import importlib
import importlib.util
import inspect
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


LOSS_TABLE = "<!-- tests/test_readme.py checks each row"


def loss_class_rows():
    """(class, module, argument names) of each row of the README's loss-class table."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index(LOSS_TABLE):].split("\n\n")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[3:]]
    return [(name.strip("`"), path.strip("`"), [a.strip(" `") for a in args.split(",")])
            for name, path, _framework, args in rows]


def constructor_of(name: str, path: str):
    module = importlib.import_module(path)
    if name == "AutoModelLinearObjectiveLoss" and importlib.util.find_spec("nemo_automodel") is None:
        # built on first access with nemo_automodel's LinearCrossEntropy as second base; its
        # constructor is the base's, which imports without it
        return module.AutoModelLinearObjectiveLossBase.__init__
    return getattr(module, name).__init__


def test_loss_class_table_matches_the_constructors():
    rows = loss_class_rows()
    assert [name for name, _, _ in rows] == ["ObjectiveLoss", "LinearObjectiveLoss", "NeMoObjectiveLoss",
                                             "AutoModelObjectiveLoss", "AutoModelLinearObjectiveLoss",
                                             "HFObjectiveLoss"]
    for name, path, args in rows:
        params = list(inspect.signature(constructor_of(name, path)).parameters)[1:]
        assert params == args, (name, params)
        assert params[:2] == ["objective", "objective_args"], name


DOCS = README.parent / "docs"


def test_continuum_table_is_the_regenerated_one():
    """The README quotes docs/continuum.md, which docs/regenerate.py writes from a run of main."""
    text = README.read_text(encoding="utf-8")
    table = (DOCS / "continuum.md").read_text(encoding="utf-8").strip().splitlines()
    missing = [line for line in table if line and line not in text]
    assert not missing, "README's continuum table differs from docs/continuum.md:\n" + "\n".join(missing)


def test_regenerated_figures_record_what_they_were_measured_on():
    import json

    figures = json.loads((DOCS / "figures.json").read_text(encoding="utf-8"))
    for part in figures.values():
        env = part["environment"]
        assert re.fullmatch(r"[0-9a-f]{7,}", env["commit"]) and env["cpus"] >= 1 and env["worker_threads"] >= 1
        assert env["packages"]["torch"] and env["packages"]["megatron-core"]
        assert part["results"]


def test_main_job_figures_are_the_regenerated_ones():
    import json

    results = json.loads((DOCS / "figures.json").read_text(encoding="utf-8"))["main"]["results"]
    text = " ".join(README.read_text(encoding="utf-8").split())
    nll, neg_p, threshold = (results[k] for k in ("nll", "neg_p", "neg_p_threshold"))
    assert f"`nll` reaches {nll['accuracy']['sort']:.1%}" in text
    assert f"(mean p on completion tokens {nll['final_mean_p']:.2f})" in text
    assert f"`neg_p` {neg_p['accuracy']['sort']:.1%}" in text
    assert f"(mean p {threshold['first_mean_p']:.4f} here)" in text
    assert f"keeps {threshold['first_kept_fraction']:.1%} of the completion tokens at step 1" in text
    assert f"({threshold['final_kept_fraction']:.0%} kept at step 300; mean p on held-out completions " \
           f"{threshold['final_mean_p']:.2f})" in text
    assert f"reaches {threshold['accuracy']['sort']:.1%} (" in text


def test_crossover_rows_are_the_regenerated_ones():
    """The README quotes every row of docs/crossover.md (the sweep docs/regenerate.py writes)."""
    text = README.read_text(encoding="utf-8")
    rows = [line for line in (DOCS / "crossover.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and line[2:3].isdigit()]
    assert len(rows) == 7
    missing = [row for row in rows if row not in text]
    assert not missing, "README's crossover table differs from docs/crossover.md:\n" + "\n".join(missing)
