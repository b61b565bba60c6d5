"""Every crashpoint in the library, found by reading the code, so a new one cannot go unproven.

A *site* is one ``crashpoint(...)`` call in the source: its file, the function around it (qualified name)
and the name it passes. Literal names (``crashpoint("graph.worker.after_fetch")``) are taken as they are;
names built from the provider (``crashpoint(f"{provider}.ingest.after_dedup")`` in the shared ingest
pipeline) are expanded for every provider whose ingest handler runs that pipeline: one site, one boundary
per provider. Every boundary name must belong to exactly one site, so a marker's name says where it died.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "common" / "exactly_once"
FUNCTIONS = ROOT / "functions"


@dataclass(frozen=True)
class Site:
    name: str  # the boundary: the name with the provider filled in
    file: str  # relative to the repository
    function: str  # qualified name of the function holding the call
    line: int
    template: str  # the name as written (an f-string's text for the provider-built ones)

    @property
    def site(self) -> str:
        return f"{self.file}:{self.function}"


def _sources() -> list[Path]:
    return sorted(p for p in [*LIBRARY.rglob("*.py"), *FUNCTIONS.rglob("*.py")] if p.name != "crash.py")


def ingest_providers() -> set[str]:
    """Providers whose events run through the shared ingest pipeline: every one that declares a webhook."""
    from exactly_once.providers import PROVIDERS

    return {p.name for p in PROVIDERS.values() if p.adapter is not None}


def _template(arg: ast.expr) -> str | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr):
        parts = []
        for value in arg.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
                parts.append("{" + value.value.id + "}")
            else:
                return None
        return "".join(parts)
    return None


def _calls(tree: ast.AST) -> list[tuple[str, int, str | None]]:
    """(qualified function name, line, name template) of every crashpoint() call."""
    found: list[tuple[str, int, str | None]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(child, [*scope, child.name])  # as co_qualname, less its "<locals>" parts
                continue
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id == "crashpoint":
                template = _template(child.args[0]) if child.args else None
                found.append((".".join(scope) or "<module>", child.lineno, template))
            visit(child, scope)

    visit(tree, [])
    return found


def sites() -> list[Site]:
    """Every crashpoint call in layers/ and functions/, expanded to one entry per boundary name."""
    providers = sorted(ingest_providers())
    out: list[Site] = []
    for path in _sources():
        text = path.read_text()
        if "crashpoint(" not in text:
            continue
        where = str(path.relative_to(ROOT))
        for function, line, template in _calls(ast.parse(text)):
            if template is None:
                out.append(Site(f"<unreadable crashpoint name at line {line}>", where, function, line, "?"))
            elif "{provider}" in template:
                out += [Site(template.replace("{provider}", p), where, function, line, template) for p in providers]
            elif "{" in template:
                out.append(Site(template + "  (unexpandable f-string)", where, function, line, template))
            else:
                out.append(Site(template, where, function, line, template))
    return out


def discovered() -> dict[str, str]:
    """crashpoint name -> the file that has it (relative to the repository)."""
    return {s.name: s.file for s in sites()}
