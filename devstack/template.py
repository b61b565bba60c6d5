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
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
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
