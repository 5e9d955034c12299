"""The package's import graph: packages depend one way, as the README's layout says, with no cycle,
and no module imports a private name of another module."""

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nemo_beyond_nll"

# Each unit (a subpackage, or a module at the package root) and the units it may import. This is
# the README's layout section; keep the two in step.
MAY_IMPORT = {
    "utils": set(),
    "core": set(),
    "data": set(),
    "config": {"core"},
    "domains": {"data", "utils"},
    "probe": {"core", "utils"},
    "recipe": {"config", "data", "domains"},
    "nemo": {"core", "config"},
    "automodel": {"core"},
    "hf": {"core", "automodel"},  # AutoModel's num_label_tokens reduction is transformers' num_items_in_batch one
    "megatron": {"core", "data", "probe"},
    "engines": {"core", "config", "data", "megatron", "probe", "utils"},
    "eval": {"config", "data", "domains", "engines", "probe", "utils"},
    "reproduce": {"config", "eval", "recipe", "utils"},
    "cli": {"config", "data", "domains", "engines", "eval", "recipe", "reproduce", "utils"},
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
