"""The README and the guides it points to stay true: the plain-PyTorch example (README and
docs/objectives.md) runs verbatim, without nemo; the loss-class table (docs/objectives.md) names real
constructors; the figures (README, docs/probe.md) are the regenerated ones; the README's copies of the
objectives table and of the headline figures are the guides'."""

import importlib
import importlib.util
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = README.parent / "docs"
OBJECTIVES = DOCS / "objectives.md"  # the objectives, the API and the loss-class table
PROBE = DOCS / "probe.md"  # the probe, the continuum and the crossover
MARK = "<!-- tests/test_readme.py runs this block"
# Makes `import nemo` fail in the child, as on a machine without nemo_toolkit.
NO_NEMO = "import sys; sys.modules['nemo'] = None\n"


def marked_blocks(path: Path):
    text = path.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(re.escape(MARK) + r"[^\n]*\n```python\n(.*?)```", text, re.S)]


def test_plain_pytorch_example_runs_without_nemo():
    blocks = marked_blocks(README)
    assert len(blocks) == 1, "the README's tested example block is missing"
    assert marked_blocks(OBJECTIVES) == blocks, "docs/objectives.md's copy of the example differs from the README's"
    proc = subprocess.run([sys.executable, "-c", NO_NEMO + blocks[0]], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"loss \d\.\d{4}, kept \d+ of 12 tokens", proc.stdout), proc.stdout


LOSS_TABLE = "<!-- tests/test_readme.py checks each row"


def loss_class_rows():
    """(class, module, argument names) of each row of the loss-class table (docs/objectives.md)."""
    text = OBJECTIVES.read_text(encoding="utf-8")
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


def test_continuum_table_is_the_regenerated_one():
    """docs/probe.md quotes docs/continuum.md, which docs/regenerate.py writes from a run of main."""
    text = PROBE.read_text(encoding="utf-8")
    table = (DOCS / "continuum.md").read_text(encoding="utf-8").strip().splitlines()
    missing = [line for line in table if line and line not in text]
    assert not missing, "docs/probe.md's continuum table differs from docs/continuum.md:\n" + "\n".join(missing)


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
    """docs/probe.md quotes every row of docs/crossover.md (the sweep docs/regenerate.py writes)."""
    text = PROBE.read_text(encoding="utf-8")
    rows = [line for line in (DOCS / "crossover.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and line[2:3].isdigit()]
    assert len(rows) == 7
    missing = [row for row in rows if row not in text]
    assert not missing, "docs/probe.md's crossover table differs from docs/crossover.md:\n" + "\n".join(missing)


def section(path: Path, heading: str) -> str:
    """The text under a level-2 heading, up to the next one."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n") + len(heading) + 5
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]


def test_readme_objectives_table_is_the_guides():
    """The README's objectives section (table and its notes) is docs/objectives.md's, word for word."""
    ours = section(README, "The objectives").strip()
    guide = section(OBJECTIVES, "The objectives").strip()
    assert ours.startswith(guide), "the README's objectives section differs from docs/objectives.md's"


def headline_bullets():
    """(bullet text, guide path) of each headline figure the README links to a guide."""
    bullets = re.split(r"\n- ", "\n" + section(README, "Headline figures").strip())[1:]
    linked = []
    for bullet in bullets:
        links = re.findall(r"\]\((docs/[^)#]+\.md)(?:#[^)]*)?\)", bullet)
        if links:
            linked.append((" ".join(bullet.split()), README.parent / links[0]))
    return bullets, linked


NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?:-\d\d-\d\d)?")


def test_headline_figures_are_the_guides():
    """Every number of a linked headline figure stands in the guide it links to (which the tests above
    and the guide's own checks keep equal to the regenerated files)."""
    bullets, linked = headline_bullets()
    assert len(linked) >= 5, bullets
    for bullet, guide in linked:
        guide_text = " ".join(guide.read_text(encoding="utf-8").split())
        guide_numbers = set(NUMBER.findall(guide_text))
        missing = [n for n in NUMBER.findall(bullet) if n not in guide_numbers]
        assert not missing, f"{guide.name} does not hold {missing} of the README's headline figure: {bullet}"


def test_headline_continuum_figures_are_the_regenerated_ones():
    """The README's continuum bullet against docs/continuum.md directly: mean ± std per end and objective."""
    rows = {}
    for line in (DOCS / "continuum.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0] in ("strong", "weak"):
            rows[cells[0], cells[2]] = cells[3]
    bullet = next(b for b, _ in headline_bullets()[1] if "continuum" in b)
    strong = f"`neg_p` {rows['strong', 'neg_p()']} against `nll` {rows['strong', 'nll()']}"
    weak = f"`nll` {rows['weak', 'nll()']} against `neg_p` {rows['weak', 'neg_p()']}"
    assert strong in bullet and weak in bullet, bullet


def kill_storm_phrases() -> list:
    """The kill storm's figures as the README and docs/run-folder.md word them, from docs/figures.json."""
    storm = json.loads((DOCS / "figures.json").read_text(encoding="utf-8"))["kill_storm"]["results"]
    by = storm["by_signal"]
    assert storm["bit_identical"] and storm["differences"] == []
    return [f"{storm['signals']} signals ({by['SIGKILL']} SIGKILL, {by['SIGTERM']} SIGTERM, {by['SIGINT']} SIGINT)",
            f"{storm['cut_checkpoint_write']} of them cutting a checkpoint write",
            f"{storm['runs']} runs in {round(storm['storm_s'])} s against {round(storm['undisturbed_s'])} s undisturbed"]


def test_kill_storm_figures_are_the_regenerated_ones():
    """The README's kill storm line and the run-folder guide quote docs/figures.json's storm."""
    bullets, _ = headline_bullets()
    bullet = " ".join(next(b for b in bullets if b.startswith("**Kill storm:**")).split())
    guide = " ".join((DOCS / "run-folder.md").read_text(encoding="utf-8").split())
    for phrase in kill_storm_phrases():
        assert phrase in bullet, (phrase, bullet)
        assert phrase in guide, phrase
    assert "bit-identical" in bullet and "bit-identical" in guide
