"""The registry (exactly_once.providers) against the code and template.yaml: a moved module cannot hide behind a string.

Every part a flow declares (``"module:attr"``) is imported and resolved here, checked to be the kind of thing its
reader calls; every declared route is served in template.yaml by a function that imports that provider's code.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import pytest

from devstack.template import Template
from exactly_once import flows, providers
from exactly_once.core.declaration import Flow, Part, Provider
from exactly_once.ingest.adapters.base import WebhookAdapter

ROOT = Path(__file__).resolve().parents[2]

PROVIDERS: list[tuple[Flow, Provider]] = [(flow, p) for flow in providers.FLOWS for p in flow.providers]
WITH_ADAPTER = [(flow, p) for flow, p in PROVIDERS if p.adapter is not None]
WITH_ROUTE = [(flow, p) for flow, p in PROVIDERS if p.route is not None]


def _flow_packages() -> dict[int, str]:
    """``id(FLOW)`` -> the package that declares it: every ``flows/<flow>/__init__.py``, and ``sends``."""
    names = [f"{flows.__name__}.{m.name}" for m in pkgutil.iter_modules(flows.__path__) if m.ispkg]
    found = {}
    for name in [*names, "exactly_once.sends"]:
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "FLOW", None), Flow), f"{name} declares no FLOW"
        found[id(module.FLOW)] = name
    return found


PACKAGE_OF = _flow_packages()


def package_of(flow: Flow) -> str:
    return PACKAGE_OF[id(flow)]


def declared_parts() -> list[tuple[Flow, str, Part]]:
    """Every Part of every flow, with where it is declared (for the test ids and messages)."""
    parts: list[tuple[Flow, str, Part]] = []
    for flow in providers.FLOWS:
        for p in flow.providers:
            for role in ("adapter", "processor", "batch_processor", "tracer", "rebuild"):
                part = getattr(p, role)
                if part is not None:
                    parts.append((flow, f"{p.name}.{role}", part))
        parts += [(flow, f"{r.name}.run", r.run) for r in flow.reapers]
        parts += [(flow, f"key_tracers[{prefix!r}]", part) for prefix, part in flow.key_tracers.items()]
    return parts


PARTS = declared_parts()


def _ids(items: list[tuple[Any, ...]]) -> list[str]:
    return [f"{flow.name}:{what if isinstance(what, str) else what.name}" for flow, what, *_ in items]


# -- The registry itself ------------------------------------------------------------------------


def test_every_flow_package_is_registered_once():
    assert sorted(PACKAGE_OF.values()) == sorted(package_of(flow) for flow in providers.FLOWS), (
        "a flows/<flow> package whose FLOW is not in providers.FLOWS, or one listed twice"
    )


def test_flow_provider_and_reaper_names_are_unique():
    flow_names = [flow.name for flow in providers.FLOWS]
    provider_names = [p.name for _, p in PROVIDERS]
    reaper_names = [r.name for flow in providers.FLOWS for r in flow.reapers]
    for names in (flow_names, provider_names, reaper_names):
        assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    # PROVIDERS is a dict: a second provider of the same name would silently replace the first.
    assert list(providers.PROVIDERS) == provider_names
    assert all(providers.FLOW_OF[p.name] is flow for flow, p in PROVIDERS)
    assert all(providers.provider(p.name) is p for _, p in PROVIDERS)


def test_key_tracer_prefixes_are_unique_across_flows():
    prefixes = [prefix for flow in providers.FLOWS for prefix in flow.key_tracers]
    assert len(prefixes) == len(set(prefixes)), prefixes


# -- Every declared part imports, and is what its reader calls ---------------------------------


@pytest.mark.parametrize(("flow", "where", "part"), PARTS, ids=_ids(PARTS))
def test_every_declared_part_loads_from_its_own_flows_package(flow, where, part):
    package = package_of(flow)
    assert part.package == package, f"{where} is declared relative to {part.package}, not its flow's {package}"
    assert part.module.startswith(package + "."), f"{where}: {part.module} is outside {package}"
    value = part.load()  # raises if the module or the attribute moved
    assert callable(value), f"{where}: {part.module}:{part.path} is not callable"
    defined_in = getattr(value, "__module__", "") or ""
    assert defined_in == package or defined_in.startswith(package + "."), (
        f"{where}: {part.path} is defined in {defined_in}, outside its flow's package {package}"
    )


@pytest.mark.parametrize(("flow", "provider"), WITH_ADAPTER, ids=_ids(WITH_ADAPTER))
def test_every_adapter_part_is_a_webhook_adapters_own_from_env(flow, provider):
    factory = provider.adapter.load()
    assert inspect.ismethod(factory) and inspect.isclass(factory.__self__), (
        f"{provider.name}.adapter is not a classmethod bound to its adapter class"
    )
    adapter = factory.__self__
    assert issubclass(adapter, WebhookAdapter) and adapter is not WebhookAdapter
    assert not inspect.isabstract(adapter), f"{adapter.__name__} leaves abstract methods"
    assert factory.__name__ == "from_env"
    own = inspect.getattr_static(adapter, "from_env") is not inspect.getattr_static(WebhookAdapter, "from_env")
    assert own, f"{adapter.__name__} has no from_env of its own"
    assert adapter.provider == provider.name, (adapter.__name__, adapter.provider)


@pytest.mark.parametrize(("flow", "provider"), PROVIDERS, ids=_ids(PROVIDERS))
def test_a_provider_with_a_route_has_an_adapter_and_a_processor(flow, provider):
    assert (provider.route is None) == (provider.adapter is None), provider.name
    if provider.adapter is not None:
        assert provider.processor is not None, f"{provider.name} ingests events no worker processes"
    if provider.batch_processor is not None:
        assert provider.processor is not None, provider.name


@pytest.mark.parametrize(("flow", "provider"), PROVIDERS, ids=_ids(PROVIDERS))
def test_every_processor_lives_under_its_flows_package(flow, provider):
    package = package_of(flow)
    for part in (provider.processor, provider.batch_processor):
        if part is not None:
            assert part.module.startswith(package + "."), (provider.name, part.module)
            module = inspect.getmodule(part.load())
            assert module is not None and module.__name__.startswith(package + "."), (provider.name, part.path)


def test_time_bounded_reapers_take_remaining_ms():
    for flow in providers.FLOWS:
        for reaper in flow.reapers:
            params = inspect.signature(reaper.run.load()).parameters
            assert len([p for p in params.values() if p.default is inspect.Parameter.empty]) == 1, (
                f"{reaper.name}: the reaper run calls it with the connection only"
            )
            if reaper.time_bounded:
                assert "remaining_ms" in params, f"{reaper.name} is time_bounded but takes no remaining_ms"


# -- Every declared route is served in template.yaml -----------------------------------------


def http_routes(template: Template) -> dict[str, set[tuple[str, str]]]:
    """HttpApi path -> the (method, function) pairs serving it."""
    served: dict[str, set[tuple[str, str]]] = {}
    for name, resource in template.functions().items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") == "HttpApi":
                props = event["Properties"]
                served.setdefault(props["Path"], set()).add((str(props.get("Method", "ANY")).upper(), name))
    return served


def handler_source(template: Template, function: str) -> Path:
    props = template.functions()[function]["Properties"]
    module = str(props["Handler"]).rsplit(".", 1)[0]
    return ROOT / str(props["CodeUri"]) / f"{module.replace('.', '/')}.py"


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, at any depth; ``from a import b`` counts as ``a`` and ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load()


@pytest.mark.parametrize(("flow", "provider"), WITH_ROUTE, ids=_ids(WITH_ROUTE))
def test_every_route_is_served_by_a_function_that_imports_the_providers_adapter_or_flow(template, flow, provider):
    served = http_routes(template)
    assert provider.route in served, f"{provider.name}: no HttpApi event in template.yaml has Path {provider.route}"
    assert {m for m, _ in served[provider.route]} & {"POST", "ANY"}, f"{provider.route} takes no POST"
    functions = sorted({f for _, f in served[provider.route]})
    assert len(functions) == 1, f"{provider.route} is served by several functions: {functions}"
    (function,) = functions
    source = handler_source(template, function)
    assert source.is_file(), f"{function}'s handler {source} does not exist"
    wanted = {provider.adapter.module, package_of(flow)}  # the adapter module, or the flow's FLOW
    assert imported_modules(source) & wanted, (
        f"{function} ({source.relative_to(ROOT)}) serves {provider.route} but imports none of {sorted(wanted)}"
    )
