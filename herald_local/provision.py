"""Creates Herald's queues, topic, subscriptions and tables from the template, through CloudFormation."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from herald_local.template import HeraldTemplate, Resolver


@dataclass
class Stack:
    name: str
    parameters: dict[str, str]
    resolver: Resolver

    def ref(self, logical_id: str) -> str:
        return self.resolver.refs[logical_id]

    def arn(self, logical_id: str) -> str:
        return self.resolver.attributes[f"{logical_id}.Arn"]


def provision(
    template: HeraldTemplate,
    parameters: dict[str, str],
    cloudformation: Any,
    sns: Any,
    region: str,
    stack_name: str = "herald-local",
    timeout: float = 120,
    cloudformation_for: Callable[[str], Any] | None = None,
    ses: Any = None,
) -> Stack:
    """Deploys the data-plane part of the template and returns what it created, by logical id.

    Where the emulator's CloudFormation skips a resource type (moto skips SNS subscriptions),
    the subscription is created here from the template's own properties. So are SES configuration
    sets and their event destinations, which neither emulator's CloudFormation creates, through
    `ses` (without it, their names are only resolved, for the functions' environments).

    `cloudformation_for(resource_type)` may send some resources to another emulator's CloudFormation
    (DynamoDB tables to moto while LocalStack has the rest): one stack per emulator, same name.
    The data plane has no reference between a table and a queue or topic, so the parts stand alone.
    """
    values = {**template.parameter_defaults(), **parameters}
    body = template.data_plane()
    declared = body["Parameters"]
    parts: dict[int, tuple[Any, dict[str, Any]]] = {}
    for name, resource in body["Resources"].items():
        deployer = cloudformation_for(resource["Type"]) if cloudformation_for else cloudformation
        parts.setdefault(id(deployer), (deployer, {}))[1][name] = resource
    for deployer, resources in parts.values():
        part = {
            **body,
            "Resources": resources,
            "Outputs": {key: value for key, value in body["Outputs"].items() if key[:-3] in resources},
        }
        stack_parameters = {k: v for k, v in values.items() if k in declared}
        try:
            deployer.create_stack(
                StackName=stack_name,
                TemplateBody=json.dumps(part),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in stack_parameters.items()],
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "AlreadyExistsException":
                raise
            # A restart on kept state: the stack is there, and must be the one this template makes.
            _check_unchanged(deployer, stack_name, part, stack_parameters)
    outputs: dict[str, str] = {}
    for deployer, _ in parts.values():
        outputs.update(_wait(deployer, stack_name, timeout))
    refs: dict[str, str] = dict(values)
    attributes: dict[str, str] = {}
    for key, value in outputs.items():
        if key.endswith("Ref"):
            refs[key[:-3]] = value
        elif key.endswith("Arn"):
            attributes[f"{key[:-3]}.Arn"] = value
    for name, resource in body["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue":
            attributes[f"{name}.QueueName"] = refs[name].rsplit("/", 1)[-1]
        if resource["Type"] == "AWS::SNS::Topic":
            attributes[f"{name}.TopicName"] = refs[name].rsplit(":", 1)[-1]
    # The queues' account: the one Herald's functions run in (moto and LocalStack use different ones).
    arns = sorted(attributes.values(), key=lambda arn: ":sqs:" not in arn)
    any_arn = next(iter(arns), f"arn:aws:sqs:{region}:000000000000:x")
    refs.update(
        {
            "AWS::Region": region,
            "AWS::AccountId": any_arn.split(":")[4],
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
    )
    resolver = Resolver(refs, attributes, evaluate_conditions(template.cfn.get("Conditions", {}), values))
    _ensure_subscriptions(body["Resources"], resolver, sns)
    _ensure_configuration_sets(template.resources, resolver, ses)
    return Stack(stack_name, values, resolver)


class StackChanged(Exception):
    """The stack kept from an earlier run was made from another template or other parameters."""


def _check_unchanged(cloudformation: Any, stack_name: str, part: dict[str, Any], parameters: dict[str, str]) -> None:
    """Raises StackChanged if the existing stack's resources, or the parameters they use, differ from these.

    An emulator that answers in another shape (a template it rewrote) is given the benefit of the doubt.
    """
    try:
        body = cloudformation.get_template(StackName=stack_name)["TemplateBody"]
        existing = json.loads(body) if isinstance(body, str) else body
        described = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0].get("Parameters", [])
    except (ClientError, ValueError, KeyError, IndexError):
        return
    if not isinstance(existing, dict) or "Resources" not in existing:
        return
    changed = sorted(
        name
        for name in existing["Resources"].keys() | part["Resources"].keys()
        if existing["Resources"].get(name) != part["Resources"].get(name)
    )
    used = _parameters_used(part["Resources"])
    before = {p["ParameterKey"]: p.get("ParameterValue") for p in described}
    changed += sorted(f"parameter {k}" for k in used if k in before and before[k] != parameters.get(k))
    if changed:
        raise StackChanged(
            f"the kept stack {stack_name} was made from another template.yaml or other parameters "
            f"({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''} differ): start with --fresh to discard it"
        )


def _parameters_used(node: Any) -> set[str]:
    """Names a part of the template refers to (Ref, Fn::Sub): the parameters among them matter to it."""
    if isinstance(node, dict):
        found = set()
        if isinstance(node.get("Ref"), str):
            found.add(node["Ref"])
        sub = node.get("Fn::Sub")
        if isinstance(sub, str):
            found |= set(_SUB_NAME.findall(sub))
        elif isinstance(sub, list) and sub and isinstance(sub[0], str):
            found |= set(_SUB_NAME.findall(sub[0]))
        for value in node.values():
            found |= _parameters_used(value)
        return found
    if isinstance(node, list):
        return set().union(*(_parameters_used(value) for value in node)) if node else set()
    return set()


_SUB_NAME = re.compile(r"\$\{([^}!.]+)\}")


def _wait(cloudformation: Any, stack_name: str, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status and "DELETE" not in status:
            return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if status.endswith("FAILED") or "ROLLBACK" in status or time.monotonic() > deadline:
            raise RuntimeError(f"stack {stack_name} is {status}: {stack.get('StackStatusReason', '')}")
        time.sleep(0.5)


def evaluate_conditions(conditions: dict[str, Any], values: dict[str, str]) -> dict[str, bool]:
    """Each condition of the template, true or false with these parameter values."""

    def evaluate(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return values.get(argument, "")
            if key == "Condition":
                return evaluate(conditions[argument])
            if key == "Fn::Equals":
                return str(evaluate(argument[0])) == str(evaluate(argument[1]))
            if key == "Fn::Not":
                return not evaluate(argument[0])
            if key == "Fn::And":
                return all(evaluate(a) for a in argument)
            if key == "Fn::Or":
                return any(evaluate(a) for a in argument)
        return node

    return {name: bool(evaluate(condition)) for name, condition in conditions.items()}


def _ensure_subscriptions(resources: dict[str, Any], resolver: Resolver, sns: Any) -> None:
    for resource in resources.values():
        if resource["Type"] != "AWS::SNS::Subscription":
            continue
        props = resolver(resource["Properties"])
        existing = sns.list_subscriptions_by_topic(TopicArn=props["TopicArn"])["Subscriptions"]
        if any(s["Endpoint"] == props["Endpoint"] and s["Protocol"] == props["Protocol"] for s in existing):
            continue
        attributes = {}
        if "RawMessageDelivery" in props:
            attributes["RawMessageDelivery"] = str(props["RawMessageDelivery"]).lower()
        if "FilterPolicy" in props:
            attributes["FilterPolicy"] = json.dumps(props["FilterPolicy"])
        if "FilterPolicyScope" in props:
            attributes["FilterPolicyScope"] = props["FilterPolicyScope"]
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        sns.subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )


def _ensure_configuration_sets(resources: dict[str, Any], resolver: Resolver, ses: Any) -> None:
    """SES configuration sets and their event destinations, from the template's properties, through SES's API."""
    for name, resource in resources.items():
        if resource["Type"] == "AWS::SES::ConfigurationSet":
            props = resolver(resource.get("Properties", {}))
            set_name = props.get("Name") or f"{resolver.refs['AWS::StackName']}-{name}"
            resolver.refs[name] = set_name
            if ses is not None:
                _unless_exists(ses.create_configuration_set, ConfigurationSet={"Name": set_name})
    if ses is None:
        return
    for resource in resources.values():
        if resource["Type"] != "AWS::SES::ConfigurationSetEventDestination":
            continue
        props = resolver(resource["Properties"])
        destination = props["EventDestination"]
        api_destination = {
            "Name": destination["Name"],
            "Enabled": bool(destination.get("Enabled", False)),
            "MatchingEventTypes": destination["MatchingEventTypes"],
        }
        if "SnsDestination" in destination:
            api_destination["SNSDestination"] = {"TopicARN": destination["SnsDestination"]["TopicARN"]}
        _unless_exists(
            ses.create_configuration_set_event_destination,
            ConfigurationSetName=props["ConfigurationSetName"],
            EventDestination=api_destination,
        )


def _unless_exists(create: Callable[..., Any], **request: Any) -> None:
    """Creates, unless an emulator that outlives a run already has it."""
    try:
        create(**request)
    except ClientError as error:
        if "AlreadyExists" not in error.response["Error"]["Code"]:
            raise
