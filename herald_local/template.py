"""Reads template.yaml the way SAM deploys it: translated to plain CloudFormation, then described."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template.yaml"

# What an emulator's CloudFormation creates: the queues, topics and tables the functions reach, and the
# topics' SQS subscriptions. Left out on purpose: functions, roles and the API (the local stack runs them);
# log groups, alarms, the dashboard and the alarm topic with its email subscription (nothing on a laptop
# is watched, and no one must be mailed); queue and topic policies (no emulator enforces them, and their
# TLS-only deny would refuse the local stack's plain-HTTP endpoint if one did).
DATA_PLANE_TYPES = frozenset({"AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::DynamoDB::Table"})
_SUB = re.compile(r"\$\{([^}!]+)\}")
NO_VALUE = object()  # what Ref AWS::NoValue resolves to: dropped from the list or object holding it


class _NoPolicies:
    def load(self) -> dict[str, Any]:
        return {}


def translate(path: Path = TEMPLATE) -> dict[str, Any]:
    """The SAM template as the plain CloudFormation that `sam deploy` would send."""
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    sam = yaml_parse(path.read_text())
    # The translator wants packaged code, as `sam package` leaves it; the local stack runs the source.
    sam.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://herald-local/functions.zip"
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"].pop("CodeUri", None)
    cfn: dict[str, Any] = transform(sam, {}, _NoPolicies())
    return cfn


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # logical id
    handler: str
    timeout: Any  # seconds, or a Ref to a parameter
    environment: dict[str, Any]  # unresolved: Refs to resources and parameters


@dataclass(frozen=True)
class EventSourceSpec:
    name: str
    function: str
    queue: str  # logical id of the SQS queue
    batch_size: int
    batching_window: int
    report_batch_item_failures: bool
    maximum_concurrency: int | None


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    function: str
    api_key_required: bool


@dataclass(frozen=True)
class ApiSpec:
    stage: Any
    routes: list[RouteSpec]
    rate_limit: float | None
    burst_limit: int | None


@dataclass
class HeraldTemplate:
    cfn: dict[str, Any]
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    event_sources: list[EventSourceSpec] = field(default_factory=list)
    apis: list[ApiSpec] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path = TEMPLATE) -> HeraldTemplate:
        template = cls(cfn=translate(path))
        template._describe()
        return template

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.cfn["Resources"]
        return resources

    def parameter_defaults(self) -> dict[str, str]:
        return {
            name: str(spec["Default"]) for name, spec in self.cfn.get("Parameters", {}).items() if "Default" in spec
        }

    def default_of(self, value: Any) -> Any:
        """A property as deployed with the parameters' defaults: a Ref to a parameter becomes its default."""
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in self.cfn.get("Parameters", {}):
            return self.parameter_defaults()[value["Ref"]]
        return value

    def data_plane(self) -> dict[str, Any]:
        """The part of the template an emulator's CloudFormation can create, with an output per resource."""
        resources = {k: copy.deepcopy(self.resources[k]) for k in sorted(self.data_plane_ids())}
        outputs: dict[str, Any] = {}
        for name, resource in resources.items():
            if resource["Type"] in {"AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::DynamoDB::Table"}:
                outputs[f"{name}Ref"] = {"Value": {"Ref": name}}
            if resource["Type"] in {"AWS::SQS::Queue", "AWS::DynamoDB::Table"}:
                outputs[f"{name}Arn"] = {"Value": {"Fn::GetAtt": [name, "Arn"]}}
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": "Herald's queues, topic and tables (local stack)",
            "Parameters": self.cfn.get("Parameters", {}),
            "Conditions": self.cfn.get("Conditions", {}),
            "Resources": resources,
            "Outputs": outputs,
        }

    def data_plane_ids(self) -> set[str]:
        """The functions' queues, topics and tables (what their environment and event sources name, and what
        those name in turn: a queue's DLQ), the topics SES publishes email events to (the local stack makes
        the configuration sets), and the SQS subscriptions of those topics."""
        reached: set[str] = set()
        todo = [
            *(name for f in self.functions.values() for name in references_in(f.environment)),
            *(source.queue for source in self.event_sources),
            *(
                name
                for r in self.resources.values()
                if r["Type"] == "AWS::SES::ConfigurationSetEventDestination"
                for name in references_in(r.get("Properties", {}))
            ),
        ]
        while todo:
            name = todo.pop()
            resource = self.resources.get(name)
            if name in reached or resource is None or resource["Type"] not in DATA_PLANE_TYPES:
                continue
            reached.add(name)
            todo.extend(references_in(resource.get("Properties", {})))
        for name, resource in self.resources.items():
            props = resource.get("Properties", {})
            if (
                resource["Type"] == "AWS::SNS::Subscription"
                and props.get("Protocol") == "sqs"
                and references_in(props.get("TopicArn")) <= reached
                and references_in(props.get("Endpoint")) <= reached
            ):
                reached.add(name)
        return reached

    def _describe(self) -> None:
        for name, resource in self.resources.items():
            kind, props = resource["Type"], resource.get("Properties", {})
            if kind == "AWS::Lambda::Function":
                self.functions[name] = FunctionSpec(
                    name=name,
                    handler=props["Handler"],
                    timeout=props.get("Timeout", 3),
                    environment=props.get("Environment", {}).get("Variables", {}),
                )
            elif kind == "AWS::Lambda::EventSourceMapping":
                self.event_sources.append(
                    EventSourceSpec(
                        name=name,
                        function=props["FunctionName"]["Ref"],
                        queue=props["EventSourceArn"]["Fn::GetAtt"][0],
                        batch_size=int(props.get("BatchSize", 10)),
                        batching_window=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                        report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                        maximum_concurrency=props.get("ScalingConfig", {}).get("MaximumConcurrency"),
                    )
                )
            elif kind == "AWS::ApiGateway::RestApi":
                self.apis.append(self._api(name, props))

    def _api(self, api: str, props: dict[str, Any]) -> ApiSpec:
        routes = []
        for path, methods in props["Body"]["paths"].items():
            for method, operation in methods.items():
                uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
                function = re.search(r"\$\{(\w+)\.Arn\}", uri)
                if function is None:
                    continue
                required = any("api_key" in s for s in operation.get("security", []))
                routes.append(RouteSpec(method.upper(), path, function.group(1), required))
        stage: Any = None
        rate_limit = burst_limit = None
        for resource in self.resources.values():
            props_ = resource.get("Properties", {})
            if resource["Type"] == "AWS::ApiGateway::Stage" and props_.get("RestApiId") == {"Ref": api}:
                stage = props_.get("StageName")
            if resource["Type"] == "AWS::ApiGateway::UsagePlan" and any(
                s.get("ApiId") == {"Ref": api} for s in props_.get("ApiStages", [])
            ):
                throttle = props_.get("Throttle", {})
                rate_limit = throttle.get("RateLimit")
                burst_limit = throttle.get("BurstLimit")
        return ApiSpec(stage=stage, routes=routes, rate_limit=rate_limit, burst_limit=burst_limit)


def references_in(value: Any) -> set[str]:
    """The logical ids (and parameters) a property names through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references_in(item)
    elif isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif key == "Fn::GetAtt":
                found.add(argument[0] if isinstance(argument, list) else argument.split(".", 1)[0])
            elif key == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                found |= {name.split(".", 1)[0] for name in _SUB.findall(text)}
                if isinstance(argument, list):
                    found |= references_in(argument[1])
            else:
                found |= references_in(argument)
    return found


@dataclass
class Resolver:
    """Resolves the intrinsic functions Herald's template uses, against a provisioned stack."""

    refs: dict[str, str]  # logical ids and parameters -> Ref value
    attributes: dict[str, str]  # "Logical.Attribute" -> value
    conditions: dict[str, bool] = field(default_factory=dict)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self, value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return NO_VALUE if argument == "AWS::NoValue" else self.refs[argument]
            if key == "Fn::GetAtt":
                name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.attributes[f"{name}.{attribute}"]
            if key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                values = {name: self(value) for name, value in variables.items()}
                text = _SUB.sub(lambda m: str(values[m[1]] if m[1] in values else self._sub_value(m[1])), text)
                return text.replace("${!", "${")  # Sub's escape of a literal ${
            if key == "Fn::Select":
                index, items = argument
                return self(items)[int(self(index))]
            if key == "Fn::Split":
                separator, text = argument
                return str(self(text)).split(separator)
            if key == "Fn::Join":
                return argument[0].join(str(self(part)) for part in argument[1])
            if key == "Fn::If":
                condition, when_true, when_false = argument
                return self(when_true if self.conditions.get(condition) else when_false)
        resolved = {key: self(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _sub_value(self, name: str) -> str:
        return self.attributes[name] if "." in name else self.refs[name]
