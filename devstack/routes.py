"""The template's HttpApi routes, SQS event sources and schedules, read generically.

Every function event of type ``HttpApi``, ``SQS`` and ``Schedule``/``ScheduleV2`` becomes
a local route, poller or timer, so a function another team adds to template.yaml
appears in ``make run`` without a code change here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from devstack.template import Template

_PARAM = re.compile(r"\{([^}/]+?)(\+?)\}")


@dataclass(frozen=True)
class Route:
    method: str  # "POST", or "ANY"
    path: str  # "/jobs/{user_id}/trigger"
    function: str  # the handler's logical id
    authorizer: str | None = None  # the authorizer function's logical id
    identity_headers: tuple[str, ...] = ()
    simple_responses: bool = True
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        regex = ""
        pos = 0
        for m in _PARAM.finditer(self.path):
            regex += re.escape(self.path[pos : m.start()])
            # {proxy+} is greedy across slashes, {name} is one segment
            regex += f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
            pos = m.end()
        regex += re.escape(self.path[pos:])
        object.__setattr__(self, "pattern", re.compile("^" + regex + "$"))

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def specificity(self) -> tuple[int, int]:
        """API Gateway prefers literal paths over parameters, and a method over ANY."""
        return (-self.path.count("{"), 0 if self.method == "ANY" else 1)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        m = self.pattern.match(path)
        return None if m is None else m.groupdict()


@dataclass(frozen=True)
class QueueSource:
    function: str
    queue: str  # logical id of the AWS::SQS::Queue
    batch_size: int = 10
    report_failures: bool = False
    batching_window_s: float = 0.0
    max_concurrency: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleSource:
    function: str
    name: str
    expression: str  # rate(...) or cron(...)
    input: str | None = None
    enabled: bool = True


def _logical(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def _events(template: Template) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for function, res in template.functions().items():
        for name, event in (res.get("Properties", {}).get("Events") or {}).items():
            found.append((function, name, event))
    return found


def http_routes(template: Template) -> list[Route]:
    apis = template.of_type("AWS::Serverless::HttpApi")
    routes: list[Route] = []
    for function, _name, event in _events(template):
        if event.get("Type") != "HttpApi":
            continue
        props = event.get("Properties") or {}
        api_id = _logical(props.get("ApiId"))
        api_auth = ((apis.get(api_id or "") or {}).get("Properties") or {}).get("Auth") or {}
        authorizers = api_auth.get("Authorizers") or {}
        name = (props.get("Auth") or {}).get("Authorizer") or api_auth.get("DefaultAuthorizer")
        authorizer_fn, headers, simple = None, (), True
        if name and name != "NONE":
            spec = authorizers.get(name)
            if spec is None:
                raise ValueError(f"{function}: authorizer {name} is not defined on {api_id}")
            authorizer_fn = _logical(spec.get("FunctionArn"))
            headers = tuple(h.lower() for h in (spec.get("Identity") or {}).get("Headers") or ())
            simple = bool(spec.get("EnableSimpleResponses"))
        method = str(props.get("Method") or "ANY").upper()
        path = str(props.get("Path") or "/{proxy+}")
        routes.append(Route(method, path, function, authorizer_fn, headers, simple))
    return sorted(routes, key=lambda r: r.specificity, reverse=True)


def queue_sources(template: Template) -> list[QueueSource]:
    sources = []
    for function, _name, event in _events(template):
        if event.get("Type") != "SQS":
            continue
        props = event.get("Properties") or {}
        queue = _logical(props.get("Queue"))
        if queue is None:
            continue  # an external queue ARN: nothing local to poll
        sources.append(
            QueueSource(
                function=function,
                queue=queue,
                batch_size=int(props.get("BatchSize", 10)),
                report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                max_concurrency=template.resolve((props.get("ScalingConfig") or {}).get("MaximumConcurrency")),
                enabled=props.get("Enabled", True) is not False,
            )
        )
    return sources


def schedules(template: Template) -> list[ScheduleSource]:
    found = []
    for function, name, event in _events(template):
        if event.get("Type") not in ("Schedule", "ScheduleV2"):
            continue
        props = event.get("Properties") or {}
        expression = props.get("Schedule") or props.get("ScheduleExpression")
        if not isinstance(expression, str):
            continue
        enabled = props.get("Enabled", True) is not False and props.get("State", "ENABLED") != "DISABLED"
        raw_input = props.get("Input")
        found.append(
            ScheduleSource(function, name, expression, raw_input if isinstance(raw_input, str) else None, enabled)
        )
    return found
