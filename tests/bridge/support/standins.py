"""Import-time stand-ins for two packages that the tier cannot install on a CPU machine.

Megatron-Bridge 0.6 imports them at module level although it runs none of their code unless a
feature is switched on that the tier does not use:
- `transformer_engine.pytorch` in `megatron.bridge.peft.lora_layers` (LoRA's TE-fused layers; class
  annotations and isinstance checks). TE's torch extension has no wheel and takes about 40 minutes
  to compile on 2 cores.
- `nvidia_resiliency_ext.inprocess.CallWrapper` in `megatron.bridge.training.pretrain` (a type
  annotation for in-process restart). PyPI's newest nvidia-resiliency-ext (0.4.1) is older than the
  0.6.0 that Megatron-Core 0.19 asserts on at import, so the real package cannot be installed.

The stand-in is visible only while the one importing module executes: every name in it is an empty
placeholder class (isinstance against it is always False), and it is removed from `sys.modules`
afterwards, so every other `import transformer_engine` (Megatron-Core's HAVE_TE checks) still
fails and Megatron-Core takes its non-TE paths. The modules the importer imports besides the
stand-in are imported first, so that none of them is executed while the stand-in is visible.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import sys
import types

# importing module -> the stand-in packages it needs while it executes
IMPORTERS = {
    "megatron.bridge.peft.lora_layers": ("transformer_engine", "transformer_engine.pytorch"),
    "megatron.bridge.training.pretrain": ("nvidia_resiliency_ext", "nvidia_resiliency_ext.inprocess"),
}


def placeholder_module(name: str) -> types.ModuleType:
    """A module whose lowercase attributes are placeholder modules and other attributes empty classes."""
    module = types.ModuleType(name)
    module.__doc__ = "test-only stand-in (tests/bridge/support/standins.py); no code of the real package"
    made: dict = {}

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr not in made:
            made[attr] = (placeholder_module(f"{name}.{attr}") if attr.islower()
                          else type(attr, (), {"__module__": name}))
        return made[attr]

    module.__getattr__ = __getattr__
    return module


def _other_imports(source: str, standins) -> list:
    """Absolute module names a module's top level imports, except the stand-ins."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    roots = {s.split(".")[0] for s in standins}
    return [n for n in names if n.split(".")[0] not in roots]


class _WithStandins(importlib.abc.Loader):
    def __init__(self, real, standins):
        self.real, self.standins = real, standins

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        for name in _other_imports(self.real.get_source(module.__name__), self.standins):
            importlib.import_module(name)
        made = {}
        for name in self.standins:
            made[name] = placeholder_module(name)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(made[parent], child, made[name])
        assert not set(made) & set(sys.modules), "a real package is installed: no stand-in needed"
        sys.modules.update(made)
        try:
            self.real.exec_module(module)
        finally:
            for name in made:
                sys.modules.pop(name, None)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in IMPORTERS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or any(importlib.util.find_spec(s.split(".")[0]) for s in IMPORTERS[name]):
            return spec  # the real packages are installed: import as usual
        spec.loader = _WithStandins(spec.loader, IMPORTERS[name])
        return spec


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
