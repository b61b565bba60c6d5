"""Creates the template's DynamoDB tables and SQS queues in moto and resolves function environments.

Local names are the logical ids (a queue ``EventsQueue`` becomes ``EventsQueue.fifo``), so
the same names appear in ``env.local.json`` and in ``sam local invoke --env-vars``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from devstack.template import Template

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto accepts any


def boto_client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)  # type: ignore[call-overload]


@dataclass
class LocalAws:
    endpoint: str
    template: Template = field(default_factory=Template.load)
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> table name or queue URL
    arns: dict[str, str] = field(default_factory=dict)

    def provision(self) -> LocalAws:
        self._tables()
        self._queues()
        return self

    def _tables(self) -> None:
        ddb = boto_client("dynamodb", self.endpoint)
        existing = set(ddb.list_tables()["TableNames"])
        for name, res in self.template.of_type("AWS::DynamoDB::Table").items():
            props = res["Properties"]
            self.physical[name] = name
            if name in existing:
                continue
            args: dict[str, Any] = {
                "TableName": name,
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if index_kind in props:
                    args[index_kind] = props[index_kind]
            ddb.create_table(**args)
            ttl = props.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )

    def _queues(self) -> None:
        sqs = boto_client("sqs", self.endpoint)
        queues = self.template.of_type("AWS::SQS::Queue")
        # Dead-letter queues first: a redrive policy names its target's ARN.
        order = sorted(queues, key=lambda n: "RedrivePolicy" in queues[n].get("Properties", {}))
        for name in order:
            props = queues[name].get("Properties", {})
            fifo = bool(props.get("FifoQueue"))
            attrs: dict[str, str] = {}
            if fifo:
                attrs["FifoQueue"] = "true"
                attrs["ContentBasedDeduplication"] = str(bool(props.get("ContentBasedDeduplication"))).lower()
            for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "MaximumMessageSize"):
                if key in props:
                    attrs[key] = str(props[key])
            redrive = props.get("RedrivePolicy")
            if redrive:
                target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
                attrs["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": self.arns[target], "maxReceiveCount": int(redrive["maxReceiveCount"])}
                )
            url = sqs.create_queue(QueueName=name + (".fifo" if fifo else ""), Attributes=attrs)["QueueUrl"]
            self.physical[name] = url
            self.arns[name] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]

    def resolve(self, value: Any, parameters: dict[str, str] | None = None) -> str | None:
        """A template value for a local function's environment (None: leave the variable out)."""
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            if ref in self.physical:
                return self.physical[ref]
            if parameters and ref in parameters:
                return parameters[ref]
            default = self.template.parameter_default(ref)
            return None if default is None else str(default)
        if isinstance(value, dict) and "Fn::If" in value:  # conditions at the parameters' defaults
            condition, when_true, when_false = value["Fn::If"]
            return self.resolve(when_true if self.template.condition(condition) else when_false, parameters)
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical, attr = value["Fn::GetAtt"]
            return self.arns.get(logical) if attr == "Arn" else self.physical.get(logical)
        return None

    def function_env(self, function: str, parameters: dict[str, str] | None = None) -> dict[str, str]:
        env: dict[str, str] = {}
        for key, value in self.template.function_env(function).items():
            resolved = self.resolve(value, parameters)
            if resolved is not None:
                env[key] = resolved
        return env
