"""The package's layers, each importing only those below it, and no cycle.

The library: core <- models <- optim. The applications above it: training
(data, steps, processes) <- runs (a run's files) <- config (a config checked
and built) <- reports <- commands.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "force_jax"
# What each layer may import from force_jax (besides itself and force_jax.errors).
LIBRARY = ("core", "models", "optim")
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "optim": {"core"},
    "training": {*LIBRARY},
    "runs": {*LIBRARY, "training"},
    "config": {*LIBRARY, "training", "runs"},
    "reports": {*LIBRARY, "training", "runs", "config"},
    "commands": {*LIBRARY, "training", "runs", "config", "reports"},
}


def _layer(path: pathlib.Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


def _force_jax_imports(path: pathlib.Path) -> list[str]:
    """Dotted names of the force_jax modules a file imports, at any depth."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("force_jax")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "force_jax"):
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(
    p.relative_to(PACKAGE)))
def test_each_layer_imports_only_the_layers_below(path):
    layer = _layer(path)
    if layer is None:
        return  # the package's own files: the public API and the command shims
    for name in _force_jax_imports(path):
        parts = name.split(".")
        if parts[1] in ("errors", layer):
            continue
        assert parts[1] in ALLOWED[layer], f"{path.name} ({layer}) imports {name}"


def test_the_prune_command_module_cannot_hide_the_prune_function():
    import force_jax as fj

    with pytest.raises(ImportError, match="python -m force_jax.prune"):
        import force_jax.prune  # noqa: F401
    assert callable(fj.prune) and fj.prune.__module__ == "force_jax.core.pruning"


def test_importing_the_package_loads_no_application_and_no_tensorflow():
    import subprocess
    import sys

    apps = ("training", "runs", "config", "reports", "commands")
    code = ("import sys, force_jax; bad = [m for m in sys.modules if m.split('.')[:2] in "
            f"{[['force_jax', app] for app in apps]!r}]; print(bad); "
            "assert not bad; assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
