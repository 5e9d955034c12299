"""The package's import graph: packages depend one way, as docs/layout.md says, with no cycle,
and no module imports a private name of another module."""

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nemo_beyond_nll"

# Each unit (a subpackage, or a module at the package root) and the units it may import. This is
# docs/layout.md; keep the two in step.
MAY_IMPORT = {
    "utils": set(),
    "core": set(),
    "data": set(),
    "run_folder": {"utils"},
    "config": {"core"},
    "domains": {"data", "utils"},
    "probe": {"core", "run_folder", "utils"},
    "recipe": {"config", "data"},
    "nemo": {"core", "config"},
    "automodel": {"core"},
    "hf": {"core", "automodel"},  # AutoModel's num_label_tokens reduction is transformers' num_items_in_batch one
    "megatron": {"core", "data", "probe"},
    "eval": {"data", "domains", "run_folder", "utils"},
    "engines": {"core", "config", "data", "eval", "megatron", "probe", "run_folder", "utils"},
    "reproduce": {"config", "engines", "eval", "recipe", "run_folder", "utils"},
    "cli": {"config", "data", "domains", "engines", "eval", "recipe", "reproduce", "run_folder"},
    "__main__": {"cli"},
    # the package root re-exports the public API
    "__init__": {"core"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path):
    """(imported module, imported names) for every import of a project module in `path`."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE.name:
                    yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE.name:
                yield target, [alias.name for alias in node.names]


def project_modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def unit_graph():
    graph = defaultdict(set)
    where = {}
    for module, path in project_modules().items():
        for target, names in imports(path):
            src = unit_of(module)
            # `from pkg import submodule` depends on the submodule's unit
            targets = [f"{target}.{n}" for n in names if f"{target}.{n}" in project_modules()] or [target]
            for t in targets:
                dst = unit_of(t)
                if dst != src:
                    graph[src].add(dst)
                    where[(src, dst)] = module
    return graph, where


def test_every_unit_is_mapped():
    units = {unit_of(m) for m in project_modules()}
    assert units == set(MAY_IMPORT), f"units missing from or stale in MAY_IMPORT: {units ^ set(MAY_IMPORT)}"


def test_units_import_only_what_the_layout_allows():
    graph, where = unit_graph()
    wrong = sorted(f"{where[(s, d)]} imports {d}" for s, ds in graph.items() for d in ds if d not in MAY_IMPORT[s])
    assert not wrong, "imports against the layout:\n" + "\n".join(wrong)


def test_data_imports_nothing_of_domains():
    # domains are built on data; the arrow never points back up, neither by an import statement nor
    # at run time (a module __getattr__ or importlib)
    assert "domains" not in MAY_IMPORT["data"]
    found = [f"{module_name(p)} imports {target}" for p in (PACKAGE / "data").rglob("*.py")
             for target, _ in imports(p) if unit_of(target) == "domains"]
    assert not found, "\n".join(found)
    probe = ("import sys, nemo_beyond_nll.data as data; "
             "assert not hasattr(data, 'build'); "
             "print(sorted(m for m in sys.modules if m.startswith('nemo_beyond_nll.domains')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_import_cycle_between_units():
    graph, _ = unit_graph()
    state = {}

    def visit(unit, trail):
        state[unit] = "open"
        for nxt in sorted(graph[unit]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[unit] = "done"

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])


def test_no_module_imports_another_modules_private_name():
    modules = project_modules()
    found = []
    for module, path in modules.items():
        for target, names in imports(path):
            for name in names:
                if name.startswith("_") and not name.startswith("__") and f"{target}.{name}" not in modules:
                    found.append(f"{module} imports {target}.{name}")
        # attribute access to a private name of an imported project module: `hook._private`
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for target, names in imports(path):
                    for alias in node.names:
                        if f"{target}.{alias.name}" in modules:
                            bound[alias.asname or alias.name] = f"{target}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{module} uses {bound[node.value.id]}.{node.attr}")
    assert not found, "private names used across modules:\n" + "\n".join(sorted(set(found)))


def test_the_two_engines_share_code_only_through_the_layers_below():
    modules = project_modules()
    crossing = [f"{module} imports {target}" for module, path in modules.items() for target, _ in imports(path)
                for mine, other in (("cpu", "bridge"), ("bridge", "cpu"))
                if module.startswith(f"{PACKAGE.name}.engines.{mine}")
                and target.startswith(f"{PACKAGE.name}.engines.{other}")]
    assert not crossing, "\n".join(crossing)


def test_evaluation_imports_no_engine():
    engines = f"{PACKAGE.name}.engines"
    found = [f"{module} imports {target}" for module, path in project_modules().items() for target, _ in imports(path)
             if module.startswith(f"{PACKAGE.name}.eval") and (target == engines or target.startswith(engines + "."))]
    assert not found, "\n".join(found)


def run_folder_names_spelled(source: str) -> list:
    """(line, text) of every place in `source` that spells a name of the run folder's layout
    (run_folder.NAMES): a string constant that is a file name or ends a path with one, and any
    `path / "name"`. Docstrings are prose and may name files."""
    from nemo_beyond_nll import run_folder

    files = [name for name in run_folder.NAMES if "." in name]
    tree = ast.parse(source)
    prose = {id(node.body[0].value) for node in ast.walk(tree)
             if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
             and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant)
                and node.right.value in run_folder.NAMES):
            found.append((node.lineno, node.right.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            text = node.value
            if any(text == name or text.endswith("/" + name) or f"/{name}/" in text for name in files) or any(
                    text.endswith("/" + name) or f"/{name}/" in text for name in run_folder.NAMES):
                found.append((node.lineno, text))
    return found


def test_the_check_for_run_folder_names_finds_each_form():
    spelled = run_folder_names_spelled('"""docs may say summary.json"""\n'
                                       'a = run / "checkpoints"\nb = "auto.json"\nc = f"{run}/summary.json"\n'
                                       'd = f"{run}/eval/x.jsonl"\ne = "eval"\n')
    assert [line for line, _ in spelled] == [2, 3, 4, 5]


def test_only_the_run_folder_module_spells_the_run_folders_file_names():
    found = [f"{module}:{line}: {text!r}" for module, path in project_modules().items()
             if module != f"{PACKAGE.name}.run_folder"
             for line, text in run_folder_names_spelled(path.read_text(encoding="utf-8"))]
    assert not found, "run-folder names outside nemo_beyond_nll/run_folder.py:\n" + "\n".join(sorted(found))
