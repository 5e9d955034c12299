"""The trust boundaries docs/security.md states that no other test backs."""

import ast
from pathlib import Path

import nemo_beyond_nll

PACKAGE = Path(nemo_beyond_nll.__file__).resolve().parent


def test_the_package_never_turns_on_trust_remote_code():
    """Hugging Face models and tokenizers load with transformers' default (no code from the model folder)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                found.append(f"{path.relative_to(PACKAGE)}:{node.value.lineno}")
            elif isinstance(node, ast.Constant) and node.value == "trust_remote_code":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


def test_a_recipe_with_a_python_tag_is_refused_in_one_line_without_running_it(tmp_path, monkeypatch, capsys):
    from nemo_beyond_nll.cli import main

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("engine: cpu\nname: !!python/object/apply:os.system ['touch CODE_RAN']\n")
    assert main(["sft", "--config", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nemo-beyond-nll: error: ") and err.count("\n") == 1
    assert not (tmp_path / "CODE_RAN").exists()
