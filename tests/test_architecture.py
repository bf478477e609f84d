"""The layout holds: dependencies point one way, facets are keyed by op class, imports stay light.

Layers, from the IR up (README, *Architecture*):

    core      graph, ops/, autodiff, evaluate, gradcheck, losses, cell, looped, recurrent,
              bptt, data/, model, optim, errors, callable_module, names, noise
    models    the built-in nets                               (core)
    training  Trainer, backends, tasks, MPI, checkpoints      (core, models)
    codegen   the Numba code generator                        (core, training's backend protocol)
    derive, draw                                              (core, models)
    lecture   the interactive lecture page                    (core, models, training, derive, draw)
    cli       the command line                                (anything)

These tests read the source with `ast`: they fail on the import itself, wherever it hides
(inside a function too), not on what happens to be loaded in one process.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("graphnn", "codegen")


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


MODULES = dict(_modules())


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "codegen":
        return "codegen"
    if len(parts) == 1:
        return "api"          # graphnn/__init__.py: the public namespace, above everything
    top = parts[1]
    if top in ("training", "models", "derive", "draw", "lecture", "cli"):
        return top
    if top == "__main__":
        return "cli"          # python -m graphnn
    if top == "train":
        return "api"          # the deprecated graphnn.train shim
    return "core"


#: layer -> the layers it may import from (itself always)
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "training": {"core", "models"},
    "codegen": {"core", "training"},
    "derive": {"core", "models"},
    "draw": {"core", "models"},
    "lecture": {"core", "models", "training", "derive", "draw"},
    "cli": {"core", "models", "training", "codegen", "derive", "draw", "lecture"},
    "api": {"core", "models", "training", "derive", "draw", "lecture"},
}


def _imports(module: str, path: Path):
    """(line, imported module, imported names) for every import statement of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [a.name for a in node.names]
            # ``from . import x`` imports the submodule x
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES] or [base]
            for target in targets:
                yield node.lineno, target, names


def _ours(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


def test_dependencies_point_one_way():
    wrong = []
    for module, path in MODULES.items():
        layer = _layer(module)
        for line, target, _ in _imports(module, path):
            if not _ours(target):
                continue
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {other} ({target})")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_codegen_uses_only_the_backend_protocol_of_training():
    wrong = [f"{path.relative_to(ROOT)}:{line}: {target}"
             for module, path in MODULES.items() if module.startswith("codegen")
             for line, target, _ in _imports(module, path)
             if target.startswith("graphnn.training") and target != "graphnn.training.backends"]
    assert not wrong, wrong


def test_no_private_name_is_imported_across_modules():
    wrong = []
    for module, path in MODULES.items():
        for line, target, names in _imports(module, path):
            if not _ours(target) or target == module:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: from {target} import {', '.join(names)}")
    assert not wrong, "private names imported across modules:\n" + "\n".join(wrong)


def _is_op_name(node) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "name" and isinstance(node.value, ast.Attribute)
            and node.value.attr == "op")


def test_no_dispatch_on_op_name_strings_outside_the_ops():
    """Facets are keyed by op class (ops.OpTable, isinstance), never by ``op.name == "…"``."""
    wrong = []
    for module, path in MODULES.items():
        if module.startswith("graphnn.ops"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and (_is_op_name(node.left)
                                                  or any(_is_op_name(c) for c in node.comparators)):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "get_op":
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} (get_op by name)")
    assert not wrong, "op.name compared with a string:\n" + "\n".join(wrong)


def test_modules_and_functions_stay_small():
    """Modules under 500 lines; a function over 60 lines says why in its docstring ("Long: …")."""
    wrong = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            wrong.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60 and "Long:" not in (ast.get_docstring(node) or ""):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}() is {length} lines")
    assert not wrong, "\n".join(wrong)


def _python(code, env=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def test_import_graphnn_is_light():
    # a Trainer on 'cpu' that starts on the reference (background compile) imports no compiler either
    proc = _python("import graphnn, sys; print('codegen' in sys.modules, 'numba' in sys.modules, "
                   "'graphnn.derive' in sys.modules, 'graphnn.draw' in sys.modules, 'graphnn.lecture' in sys.modules)\n"
                   "t = graphnn.Trainer(graphnn.models.get_model('mazur'), backend='cpu', background_compile=True)\n"
                   "print('codegen' in sys.modules, 'numba' in sys.modules)")
    assert proc.stdout.split() == ["False"] * 7, proc.stderr


def test_derive_and_draw_load_on_first_use_and_are_callable():
    proc = _python("import graphnn as gn, sys\n"
                   "m = gn.models.get_model('mazur')\n"
                   "d = gn.derive(m, 'w5', values=True)\n"
                   "from graphnn.derive import Derivation\n"     # the subpackage, imported after the call
                   "assert isinstance(d, Derivation) and isinstance(gn.derive(m, 'w6'), Derivation)\n"
                   "assert 'digraph' in gn.draw(m).source\n"
                   "print('graphnn.derive' in sys.modules, 'numba' in sys.modules)")
    assert proc.stdout.split() == ["True", "False"], proc.stderr


def test_public_names_all_resolve():
    import graphnn
    missing = [n for n in graphnn.__all__ if not hasattr(graphnn, n)]
    assert not missing
    assert len(graphnn.__all__) == len(set(graphnn.__all__))


def test_the_old_train_module_still_works_with_a_warning():
    proc = _python("import warnings; warnings.simplefilter('error')\n"
                   "try:\n    import graphnn.train\nexcept DeprecationWarning as e:\n    print('warned:', e)\n")
    assert "warned: graphnn.train is deprecated; use graphnn.training" in proc.stdout, proc.stderr
    proc = _python("import warnings; warnings.simplefilter('ignore')\n"
                   "from graphnn.train import Trainer, fit\nfrom graphnn.training import Trainer as T\n"
                   "print(Trainer is T)")
    assert proc.stdout.strip() == "True", proc.stderr


@pytest.fixture
def broken_numba(tmp_path):
    """A PYTHONPATH entry where `import numba` fails, as with a broken install."""
    fake = tmp_path / "numba"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('numba is broken here (a test stand-in)')\n")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("start", ["--no-background-compile", "--background-compile"])
def test_a_backend_that_cannot_load_says_what_it_needs_and_why(broken_numba, start):
    # with a background compile, the reference trains at once and the error comes at the end at the latest
    proc = subprocess.run([sys.executable, "-m", "graphnn", "train", "mazur", "--backend", "cpu", "--steps", "1", start],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **broken_numba}, cwd=ROOT)
    assert proc.returncode != 0
    err = proc.stderr
    assert "backend 'cpu' cannot load: it needs Numba" in err
    assert "numba is broken here (a test stand-in)" in err
    assert "unknown backend" not in err and "Traceback" not in err


def test_the_reference_backend_needs_no_numba(broken_numba):
    proc = subprocess.run([sys.executable, "-m", "graphnn", "train", "mazur", "--steps", "2"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **broken_numba}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "final loss:" in proc.stdout


def test_backends_are_found_by_name_and_unknown_ones_listed():
    from graphnn.errors import UnknownNameError
    from graphnn.training import BACKENDS, NumpyBackend, backend_factory, register_backend

    assert backend_factory("numpy") is NumpyBackend
    assert {"numpy", "cpu", "cuda"} <= set(BACKENDS)
    with pytest.raises(UnknownNameError, match="unknown backend 'tpu'; available: cpu, cuda, numpy"):
        backend_factory("tpu")
    register_backend("numpy-again", "graphnn.training.backends:NumpyBackend")
    try:
        assert backend_factory("numpy-again") is NumpyBackend
    finally:
        del BACKENDS["numpy-again"]


def test_lowerings_are_found_along_the_op_class_hierarchy():
    """A user's subclass of an op inherits what other layers attached to the op's class."""
    from graphnn.ops import Map, OpTable

    table = OpTable("a test facet", {Map: "map's"})

    class MyMap(Map):
        name = "my_map_for_the_architecture_test"

    assert table.get(MyMap.instance()) == "map's" and MyMap in table
    with pytest.raises(TypeError, match="keyed by an Op class"):
        table["map"] = "by name"


def test_model_options_are_declared_by_the_model():
    from graphnn import models

    assert models.options_of("rnn") == {"steps": "unroll over T time steps",
                                        "truncate": "truncated BPTT, K steps back"}
    assert models.options_of("mazur") == {}
    assert models.resolve("rnn", steps=3).extras["scan"].length == 3
    with pytest.raises(ValueError, match="model 'mazur' has no option --steps"):
        models.resolve("mazur", steps=3)
