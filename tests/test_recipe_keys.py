"""Every key the recipe schema declares is read by the package's code (a key nothing reads is a lie).

Checking a value is not reading it: the recipe's own validation (`recipe.validate` and the private
steps it calls) does not count, so a key that is only validated is reported too."""

import ast
import dataclasses
import re
from pathlib import Path

from nemo_beyond_nll import recipe

PACKAGE = Path(recipe.__file__).resolve().parent


def schema_keys(cls, prefix=""):
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        yield path
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from schema_keys(type(default), path + ".")


def loop_constants(tree):
    """{name: its values} for loops such as `for key in ("tensor_parallel", "pipeline_parallel")`."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, (ast.Tuple, ast.List)):
            values = [e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if values:
                out.setdefault(node.target.id, []).extend(values)
    return out


def chains(node, aliases, loops):
    """Every dotted path an expression can read: cfg.model[key] in a loop over names gives one per name;
    a local alias (m = cfg.model) is followed; a computed subscript ends the path."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, [node.id])
    if isinstance(node, ast.Attribute):
        return [f"{c}.{node.attr}" for c in chains(node.value, aliases, loops)]
    if isinstance(node, ast.Subscript):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names = [key.value]
        elif isinstance(key, ast.Name) and key.id in loops:
            names = loops[key.id]
        else:
            return []  # an index or a computed key: not a config path
        return [f"{c}.{n}" for c in chains(node.value, aliases, loops) for n in names]
    return []


def validation_functions(tree):
    """The functions of recipe.py that only validate: `validate` and the private functions it calls,
    directly or through one another (a public one it calls, such as world_size, has other callers)."""
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    found, todo = set(), ["validate"]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions \
                    and node.func.id.startswith("_"):
                todo.append(node.func.id)
    return [functions[name] for name in found]


def reads():
    """Dotted paths read, sections passed whole as keyword arguments, and string constants, across
    the package outside the schema's own classes and the recipe's validation."""
    paths, splats, strings = set(), set(), []
    schema_classes = {name for name, obj in vars(recipe).items() if dataclasses.is_dataclass(obj)}
    sections = {f.name for f in dataclasses.fields(recipe.Recipe)}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # docstrings name keys without reading them
        skip = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            # a condition whose only consequence is an error checks a value without using it, and the
            # error's message names it
            if isinstance(node, ast.If) and not node.orelse and all(isinstance(b, ast.Raise) for b in node.body):
                skip.update(id(n) for n in ast.walk(node.test))
            if isinstance(node, ast.Raise):
                skip.update(id(n) for n in ast.walk(node))
        if path.name == "recipe.py":
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and node.name in schema_classes:
                    skip.update(id(n) for n in ast.walk(node))
            for function in validation_functions(tree):
                skip.update(id(n) for n in ast.walk(function))
        loops, aliases = loop_constants(tree), {}
        # a parameter named after a section (`eval_cfg`) holds that section
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and node.arg.endswith("_cfg") and node.arg[:-4] in sections:
                aliases[node.arg] = [f"cfg.{node.arg[:-4]}"]
        for node in ast.walk(tree):  # local aliases first: `m = cfg.model`, `m, t = cfg.model, cfg.trainer`
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            target, value = node.targets[0], node.value
            pairs = zip(target.elts, value.elts) if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) else [(target, value)]
            for name, expr in pairs:
                if isinstance(name, ast.Name) and isinstance(expr, (ast.Attribute, ast.Subscript)):
                    # a name bound more than once in a file may hold any of its values
                    aliases[name.id] = aliases.get(name.id, []) + chains(expr, aliases, loops)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, (ast.Attribute, ast.Subscript)):
                paths.update(chains(node, aliases, loops))
            elif isinstance(node, ast.keyword) and node.arg is None:  # f(**cfg.model.tiny) reads every key
                splats.update(chains(node.value, aliases, loops))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.append(node.value)
    return paths, splats, strings


def matches(path: str, needle: list) -> bool:
    parts = path.split(".")
    return any(parts[i:i + len(needle)] == needle for i in range(1, len(parts) - len(needle) + 1))


def test_every_schema_key_is_read():
    paths, splats, strings = reads()
    unread = []
    for key in schema_keys(recipe.Recipe):
        # read as a path holding the key's section and name (cfg.optim.lr, or tiny.hidden_size for
        # model.tiny.hidden_size), as a key of a section passed whole (**cfg.model.tiny), or named
        # whole in a string (a select path, a Bridge override)
        needle = key.split(".")[-2:]
        if any(matches(p, needle) for p in paths) or any(re.search(rf"\b{re.escape(key)}\b", s) for s in strings):
            continue
        if len(needle) == 2 and any(matches(p, needle[:1]) for p in splats):
            continue
        unread.append(key)
    assert not unread, f"schema keys that no code reads: {unread}"
