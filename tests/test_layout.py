"""The package's layout rules (docs/ARCHITECTURE.md), checked on the source: which modules load
no TensorFlow, that imports point one way with no cycle, that no module outside
pga_tf/methods/ names a method, and that no test file imports another."""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

import pytest

from pga_tf import methods

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pga_tf"

# Read before TensorFlow loads (flags, the registry, results' bookkeeping), so a user error is
# reported in a second and `--help` needs no TensorFlow.
TENSORFLOW_FREE = (
    "pga_tf.methods",
    "pga_tf.config",
    "pga_tf.cli",
    "pga_tf.run_lock",
    "pga_tf.console",
    "pga_tf.images",
    "pga_tf.training",
    "pga_tf.evaluation",
    "pga_tf.nets",
    "pga_tf.tools",
    "pga_tf.evaluation.precision_recall",
    "pga_tf.machine",
    "pga_tf.tools.comparison",
    "pga_tf.tools.comparison_report",
    "pga_tf.tools.curves",
    "pga_tf.tools.results",
    "pga_tf.commands",
    "pga_tf.commands.train",
    "pga_tf.commands.evaluate",
    "pga_tf.commands.export_savedmodel",
    "pga_tf.commands.tools",
    # What the programs check before TensorFlow loads (a run dir, its config.json, the data, an
    # export's destination), so those mistakes are reported in a second too.
    "pga_tf.data",
    "pga_tf.runs",
    "pga_tf.checkpoints",
    "pga_tf.export_paths",
    "pga_tf.training.preflight",
    "pga_tf.evaluation.classifier",
    "pga_tf.evaluation.features",
)

# Who may import whom: a module of a layer imports only modules of its own layer or of layers
# after it in this list ("x.*" is package x's modules, "x" the module or package x itself). The
# method registry (pga_tf.methods and its cards) is facts, at the bottom beside config; the
# method families' code is above the nets and samplers it builds on.
LAYERS = (
    ("pga_tf.commands", "pga_tf.commands.*"),  # the programs: they may import anything below
    ("pga_tf.tools.*",),
    ("pga_tf.training.*", "pga_tf.evaluation.*", "pga_tf.export", "pga_tf.runs"),
    ("pga_tf.methods.*",),
    ("pga_tf.nets.*", "pga_tf.samplers", "pga_tf.data", "pga_tf.checkpoints", "pga_tf.images"),
    (
        "pga_tf.config",
        "pga_tf.methods",
        "pga_tf.methods.cards",
        "pga_tf.methods.cards.*",
        "pga_tf.run_lock",
        "pga_tf.console",
        "pga_tf.machine",
        "pga_tf.export_paths",
    ),
)
ENTRY_MODULES = ("pga_tf.cli",)  # flags and the run() wrapper of every entry point


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the pga_tf modules it imports, at any depth of its code (function-level imports
    count: they still tie the modules together)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if target in modules:
                        graph[name].add(target)
                    elif node.module in modules:
                        graph[name].add(node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
    for name in graph:  # a package's own submodules are its parts, not a dependency
        graph[name] = {t for t in graph[name] if t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def _layer(module: str) -> int | None:
    """The layer of `module`: its exact entry, else the longest "x.*" entry it falls under."""
    best, best_length = None, -1
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if entry == module:
                return i
            if entry.endswith(".*") and module.startswith(entry[:-1]) and len(entry) > best_length:
                best, best_length = i, len(entry)
    return best


def upward(graph: dict[str, set[str]]) -> list[str]:
    """The imports in `graph` that point up the LAYERS."""
    wrong = []
    for module, targets in sorted(graph.items()):
        here = _layer(module)
        if here is None or module in ENTRY_MODULES:
            continue
        for target in sorted(targets):
            there = _layer(target)
            if there is not None and there < here:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_layer_rule_sees_an_upward_import():
    graph = {
        "pga_tf.nets.models": {"pga_tf.training.loop", "pga_tf.config"},
        "pga_tf.methods.pga": {"pga_tf.nets.models"},
        "pga_tf.config": {"pga_tf.methods"},
    }
    assert upward(graph) == ["pga_tf.nets.models imports pga_tf.training.loop"]


def test_imports_point_one_way():
    assert upward(import_graph()) == []


def _method_name_literals(path: pathlib.Path) -> list[str]:
    names = set(methods.names())
    return [
        f"{path.name}:{node.lineno} {node.value!r}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    ]


def test_no_method_named_outside_the_method_package():
    found = [
        hit
        for module, path in _modules().items()
        if not module.startswith("pga_tf.methods")
        for hit in _method_name_literals(path)
    ]
    assert found == []


def test_method_name_finder_sees_a_comparison(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f(cfg):\n    return cfg.method == 'lpga'\n")
    assert _method_name_literals(probe) == ["probe.py:2 'lpga'"]


# Run first in the subprocess: any import of TensorFlow, or of what loads it (Keras, TFP, TFDS,
# TF-GAN), raises ImportError, so a module that reaches for it fails to load, as it would on a
# machine without TensorFlow; checking sys.modules afterwards would miss an import that is
# caught and worked around.
BLOCK_TENSORFLOW = """
import importlib.abc, sys

class BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tf_keras") or name.startswith("tensorflow"):
            raise ImportError(f"{name} is blocked: this process runs without TensorFlow")

sys.meta_path.insert(0, BlockTensorFlow())
"""


def _import_without_tensorflow(module: str) -> subprocess.CompletedProcess:
    code = BLOCK_TENSORFLOW + f"import {module}\nfrom pga_tf import methods\nmethods.all_methods()\n"  # every card too
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.e2e
@pytest.mark.parametrize("module", TENSORFLOW_FREE)
def test_module_loads_without_tensorflow(module):
    proc = _import_without_tensorflow(module)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.e2e
def test_tensorflow_block_stops_a_module_that_needs_tensorflow():
    proc = _import_without_tensorflow("pga_tf.nets.models")
    assert proc.returncode != 0 and re.search(r"(tensorflow|keras) is blocked", proc.stderr), proc.stderr


# --------------------------------------------------------------------------------- the tests
TESTS = pathlib.Path(__file__).resolve().parent
# The one module test files share; anything else a test file needs it defines itself.
TEST_HELPERS = ("tests.helpers", "tests.conftest")


def cross_test_imports(directory: pathlib.Path) -> list[str]:
    """ "file:line module" for each import, at any depth, of a test module other than the helpers."""
    own = {path.stem for path in directory.glob("*.py")}
    found = []
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
                if node.module in (None, "tests"):  # `from tests import test_x`, `from . import test_x`
                    names = [f"tests.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.lstrip(".").split(".")
                local = parts[1:] if parts[0] == "tests" else parts
                if local and local[0] in own and f"tests.{local[0]}" not in TEST_HELPERS:
                    found.append((path.name, node.lineno, name))
    return [f"{file}:{line} {name}" for file, line, name in sorted(found)]


def test_no_test_file_imports_another():
    """A test file can be renamed, moved or run alone: what files share lives in tests/helpers.py."""
    assert cross_test_imports(TESTS) == []


def test_cross_test_import_finder_sees_each_form(tmp_path):
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "test_a.py").write_text("X = 1\n")
    (tmp_path / "test_b.py").write_text(
        "from tests.helpers import ROOT\n"
        "from tests.test_a import X\n"
        "def f():\n    import tests.test_a\n"
        "from tests import test_a\n"
        "from .test_a import X\n"
        "import numpy\n"
    )
    assert cross_test_imports(tmp_path) == [
        "test_b.py:2 tests.test_a",
        "test_b.py:4 tests.test_a",
        "test_b.py:5 tests.test_a",
        "test_b.py:6 .test_a",
    ]
