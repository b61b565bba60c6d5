"""Reads template.yaml: the local stack's tables, queues, routes and environment come from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, read as their long form ({"Ref": ...}, {"Fn::GetAtt": ...})."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"  # !Condition X is {"Condition": X}
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@dataclass
class Template:
    doc: dict[str, Any]
    resources: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.resources = self.doc.get("Resources", {})

    @classmethod
    def load(cls, path: Path = TEMPLATE) -> Template:
        # _CfnLoader subclasses SafeLoader (it only adds constructors for the !Ref-style tags).
        return cls(yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader))  # noqa: S506  # nosec B506

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res.get("Type") == kind}

    def functions(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::Serverless::Function")

    def global_env(self) -> dict[str, Any]:
        return dict(self.doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))

    def function_env(self, name: str) -> dict[str, Any]:
        props = self.functions()[name].get("Properties", {})
        return {**self.global_env(), **props.get("Environment", {}).get("Variables", {})}

    def parameter_default(self, name: str) -> Any:
        return self.doc.get("Parameters", {}).get(name, {}).get("Default")

    def resolve(self, value: Any) -> Any:
        """A property's value with the parameters at their defaults: Ref, Fn::If and its conditions.

        ``None`` stands for ``AWS::NoValue``; anything else (GetAtt, Sub, ...) is returned as it is.
        """
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return None
                params = self.doc.get("Parameters", {})
                return _typed(params[arg]) if arg in params else value
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
        return value

    def condition(self, name: str) -> bool:
        return bool(self._truth(self.doc.get("Conditions", {})[name]))

    def _truth(self, expr: Any) -> Any:
        if not isinstance(expr, dict):
            return expr
        ((key, arg),) = expr.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            return self._truth(self.resolve(arg[0])) == self._truth(self.resolve(arg[1]))
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(a) for a in arg)
        if key == "Fn::Or":
            return any(self._truth(a) for a in arg)
        if key == "Fn::Join":
            parts = self.resolve(arg[1])
            return str(arg[0]).join(str(p) for p in (parts if isinstance(parts, list) else [parts]))
        return self.resolve(expr)

    def function_concurrency(self, name: str) -> int | None:
        """How many invocations of ``name`` run at once with the defaults: its reserved concurrency,
        else the smallest ``MaximumConcurrency`` of its SQS event sources, else None (the account's)."""
        props = self.functions()[name].get("Properties", {})
        reserved = self.resolve(props.get("ReservedConcurrentExecutions"))
        if isinstance(reserved, int):
            return reserved
        caps = [
            self.resolve((e.get("Properties", {}).get("ScalingConfig") or {}).get("MaximumConcurrency"))
            for e in (props.get("Events") or {}).values()
            if e.get("Type") == "SQS"
        ]
        ints = [c for c in caps if isinstance(c, int)]
        return min(ints) if ints else None


def _typed(parameter: dict[str, Any]) -> Any:
    default = parameter.get("Default")
    if parameter.get("Type") == "Number" and default is not None:
        return int(default) if float(default).is_integer() else float(default)
    if str(parameter.get("Type", "")).startswith("CommaDelimitedList") and isinstance(default, str):
        return default.split(",") if default else [""]
    return default
