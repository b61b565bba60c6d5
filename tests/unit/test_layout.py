"""How the library stacks, read from its source with ``ast`` (every import, at any depth, function-local included).

    core  <-  ingest  <-  sends  <-  flows/<flow>  <-  providers  <-  worker, ops

core imports nothing above it; ingest only core; sends only core and ingest; a flow only core, ingest, sends and
itself (never another flow); providers (the registry) the flows; worker anything but ops; and nothing but ops
itself (and the handlers in functions/) imports ops. The top stays small, and no module grows past 400 lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "common"
PACKAGE = LIBRARY / "exactly_once"

MAX_TOP_MODULES = 15
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIBRARY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def resolve(name: str) -> str:
    """The library module ``name`` is, or the nearest enclosing one (``a.b.attr`` -> ``a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the library module imported
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def imports_of(path: Path, source: str) -> list[Import]:
    """Every library module ``path`` imports: ``import``, ``from ... import`` (relative ones resolved),
    and ``importlib.import_module("...")``/``__import__("...")`` with a literal name, at any depth."""
    found: list[Import] = []
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]

    def add(name: str, line: int) -> None:
        if name == "exactly_once" or name.startswith("exactly_once."):
            found.append(Import(source, resolve(name), line))

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from exactly_once.flows import graph`` imports the module exactly_once.flows.graph
                candidate = f"{base}.{alias.name}"
                add(candidate if candidate in MODULES else base, node.lineno)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                add(node.args[0].value, node.lineno)
    return found


IMPORTS: list[Import] = [i for name, path in MODULES.items() for i in imports_of(path, name)]


def layer(module: str) -> str:
    """``core``, ``ingest``, ``sends``, ``flows.<flow>``, ``flows``, ``ops``, ``providers``, ``worker`` or ``root``."""
    parts = module.split(".")[1:]
    if not parts:
        return "root"
    if parts[0] == "flows" and len(parts) > 1:
        return f"flows.{parts[1]}"
    return parts[0]


def violations(source_layer: str, allowed: set[str]) -> list[str]:
    """The imports from ``source_layer`` into any layer not in ``allowed`` (a package's own ``__init__``
    chain, e.g. importing ``exactly_once`` or ``exactly_once.flows``, is no dependency)."""
    return [
        str(i)
        for i in IMPORTS
        if layer(i.source) == source_layer
        and layer(i.target) not in allowed
        and not (is_package(i.target) and layer(i.target) in {"root", "flows"})
    ]


FLOW_LAYERS = sorted({layer(m) for m in MODULES if layer(m).startswith("flows.")})


def test_the_layout_is_what_this_file_expects():
    layers = {layer(m) for m in MODULES}
    assert {"core", "ingest", "sends", "ops", "providers", "worker"} <= layers
    assert FLOW_LAYERS, "no flows/<flow> packages found"
    assert layers <= {"root", "core", "ingest", "sends", "ops", "providers", "worker", "flows", *FLOW_LAYERS}, (
        f"a new top-level part of the library: {sorted(layers)}; place it in this file's stacking"
    )
    assert IMPORTS, "no imports found: the reader is broken"


def test_core_imports_only_core():
    assert violations("core", {"core"}) == []


def test_ingest_imports_only_core_and_itself():
    assert violations("ingest", {"core", "ingest"}) == []


def test_sends_imports_only_core_ingest_and_itself():
    assert violations("sends", {"core", "ingest", "sends"}) == []


@pytest.mark.parametrize("flow", FLOW_LAYERS)
def test_a_flow_imports_only_core_ingest_sends_and_itself_never_another_flow(flow):
    assert violations(flow, {"core", "ingest", "sends", flow}) == []


def test_the_registry_imports_only_the_flows_and_below():
    assert violations("providers", {"core", "ingest", "sends", "providers", *FLOW_LAYERS}) == []


def test_nothing_in_the_library_imports_ops_but_ops_itself():
    # The worker may import anything below it, but not ops (the operator's tools: replay, trace, gauges, cli);
    # only ops itself and the handlers in functions/ do.
    found = [str(i) for i in IMPORTS if layer(i.target) == "ops" and layer(i.source) != "ops"]
    assert found == [], f"only ops and functions/ may import exactly_once.ops: {found}"


def test_the_packages_own_inits_import_nothing_above_them():
    # flows/__init__.py and the root __init__.py are namespaces: they pull no flow or layer in.
    assert violations("flows", {"flows"}) == [] and violations("root", {"root"}) == []


def test_the_reader_sees_function_local_relative_and_dynamic_imports(tmp_path):
    code = (
        "from . import fifo\n"
        "from ..sends import queue\n"
        "def f():\n"
        "    from exactly_once.flows import graph\n"
        "    import exactly_once.ops.cli\n"
        "    importlib.import_module('exactly_once.worker')\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(code)
    targets = {i.target for i in imports_of(path, "exactly_once.core.probe")}
    assert targets == {
        "exactly_once.core.fifo",
        "exactly_once.sends.queue" if "exactly_once.sends.queue" in MODULES else "exactly_once.sends",
        "exactly_once.flows.graph",
        "exactly_once.ops.cli",
        "exactly_once.worker",
    }


# -- Size -------------------------------------------------------------------------------------


def test_at_most_fifteen_modules_at_the_top_of_the_library():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules directly in exactly_once/: {top}"


@pytest.mark.parametrize("module", sorted(MODULES), ids=sorted(MODULES))
def test_no_module_is_over_400_lines(module):
    path = MODULES[module]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, (
        f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}): split it along what it does"
    )
