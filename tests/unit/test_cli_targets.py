"""`herald --stack-name`: what the CLI reads of a deployed stack, against moto's CloudFormation, API Gateway and
CloudWatch; and that template.yaml has every output it reads."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from enum import Enum
from typing import Any, Literal, get_args, get_origin

import boto3
import pytest
import yaml
from moto import mock_aws

from dlq_redrive.app import RedriveRequest
from herald.settings import DlqRedriveSettings
from herald_cli.app import Selection
from herald_cli.targets import DEAD_LETTER_QUEUES, DeployedTarget, TargetError, dead_letter_queues_of
from herald_local.template import TEMPLATE, HeraldTemplate

OUTPUTS_READ = {"ApiUrl", "ApiKeyId", "DlqRedriveFunctionName", *(output for _, output in DEAD_LETTER_QUEUES.values())}


class TemplateLoader(yaml.SafeLoader):
    """Reads template.yaml's short-form intrinsics (!Ref, !Sub, ...) as plain values."""


TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_template_yaml_outputs_everything_the_cli_reads_of_a_deployed_stack():
    outputs = yaml.load(TEMPLATE.read_text(), Loader=TemplateLoader)["Outputs"]
    assert set(outputs) >= OUTPUTS_READ, OUTPUTS_READ - set(outputs)


def accepted_by_the_redrive_function() -> set[str]:
    """Every `priority` DlqRedriveFunction's event may name (a Priority, or one of its Literal words)."""
    values: set[str] = set()
    for kind in get_args(RedriveRequest.model_fields["priority"].annotation):
        if get_origin(kind) is Literal:
            values.update(get_args(kind))
        elif isinstance(kind, type) and issubclass(kind, Enum):
            values.update(member.value for member in kind)
    return values


def test_redrive_offers_what_the_function_accepts_and_watches_the_queues_it_moves():
    # Given the redrive function's environment as the template gives it, each URL told apart
    environment = {name: f"url:{name}" for name in HeraldTemplate.load().functions["DlqRedriveFunction"].environment}
    settings = DlqRedriveSettings.from_environment(environment)

    # Then `herald redrive --priority` offers exactly what the function accepts (the lanes' intake-<p> too)
    assert {choice.value for choice in Selection} == accepted_by_the_redrive_function()
    for choice in Selection:
        # and for each, the progress bar watches the DLQs the function moves, found by the same variables
        routes = settings.routes(choice.value)
        assert dead_letter_queues_of(choice.value) == [route.name for route in routes], choice
        assert [f"url:{DEAD_LETTER_QUEUES[route.name][0]}" for route in routes] == [r.dlq_url for r in routes]
    assert len(dead_letter_queues_of("all")) == 8


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    # Given a stack named herald-test whose outputs name an API key and the dead-letter queues
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        key = boto3.client("apigateway", region_name="us-east-1").create_api_key(
            name="herald", value="the-key-value-0123456789", enabled=True
        )
        outputs = {
            "ApiUrl": "https://abc.execute-api.us-east-1.amazonaws.com/dev",
            "ApiKeyId": key["id"],
            "DlqRedriveFunctionName": "herald-DlqRedriveFunction-1",
            **{
                output: f"https://sqs.us-east-1.amazonaws.com/1/{name}-dlq"
                for name, (_, output) in DEAD_LETTER_QUEUES.items()
            },
        }
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {name: {"Value": value} for name, value in outputs.items()},
        }
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="herald-test", TemplateBody=json.dumps(template)
        )
        yield outputs


def test_it_reads_the_outputs_and_the_api_keys_value(deployed):
    # When the CLI is pointed at the stack by name
    target = DeployedTarget("herald-test", "us-east-1")

    # Then it has the outputs, the dead-letter queues by name, and the key's value from API Gateway
    assert target.output("ApiUrl") == deployed["ApiUrl"]
    queues = target.dead_letter_queues()
    assert queues["intake-high"] == deployed["HighIntakeDeadLetterQueueUrl"]
    assert queues["low"] == deployed["LowDeadLetterQueueUrl"] and len(queues) == 8
    assert queues["schedule"] == deployed["ScheduleDeadLetterQueueUrl"]
    assert queues["feedback"] == deployed["FeedbackDeadLetterQueueUrl"]
    assert target.api_key == "the-key-value-0123456789"
    assert target.description == "stack herald-test in us-east-1"


def test_a_missing_output_or_stack_is_said_plainly(deployed):
    with pytest.raises(TargetError, match=r"no output NotThere: deploy the current template\.yaml"):
        DeployedTarget("herald-test", "us-east-1").output("NotThere")
    with pytest.raises(TargetError, match="cannot read stack nowhere"):
        DeployedTarget("nowhere", "us-east-1").output("ApiUrl")


def test_faults_are_refused_on_a_deployed_stack(deployed):
    with pytest.raises(TargetError, match="local stack's only"):
        DeployedTarget("herald-test", "us-east-1").control("GET", "/faults")


def test_metrics_come_from_cloudwatch_summed_over_the_window(deployed):
    # Given Herald's metrics in CloudWatch: two send counts of one dimension set, two latencies, another namespace
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    email = [{"Name": n, "Value": v} for n, v in (("channel", "email"), ("priority", "high"), ("service", "herald"))]
    high = [{"Name": "priority", "Value": "high"}, {"Name": "service", "Value": "herald"}]
    cloudwatch.put_metric_data(
        Namespace="Herald",
        MetricData=[
            {"MetricName": "DeliveriesSent", "Dimensions": email, "Value": 2, "Unit": "Count"},
            {"MetricName": "DeliveriesSent", "Dimensions": email, "Value": 3, "Unit": "Count"},
            {"MetricName": "AcceptedToSentLatency", "Dimensions": high, "Value": 120, "Unit": "Milliseconds"},
            {"MetricName": "AcceptedToSentLatency", "Dimensions": high, "Value": 480, "Unit": "Milliseconds"},
        ],
    )
    cloudwatch.put_metric_data(Namespace="Other", MetricData=[{"MetricName": "Noise", "Value": 1}])

    # When the CLI reads the last hour
    summaries, records = DeployedTarget("herald-test", "us-east-1").metrics(since=0, minutes=60)

    # Then it has Herald's metrics only, per dimension set, with CloudWatch's statistics
    by_name = {s.name: s for s in summaries}
    assert set(by_name) == {"DeliveriesSent", "AcceptedToSentLatency"} and records == []
    sent = by_name["DeliveriesSent"]
    assert (sent.sum, sent.samples, sent.dimensions["channel"]) == (5.0, 2, "email")
    latency = by_name["AcceptedToSentLatency"]
    assert (latency.minimum, latency.maximum, latency.average) == (120.0, 480.0, 300.0)


def test_a_redrive_log_tail_and_a_function_error_reach_the_operator(deployed):
    # Given a Lambda client that answers as a failed invocation does, with its log tail
    import base64

    class FailedInvoke:
        def invoke(self, **request: Any) -> dict[str, Any]:
            assert request["FunctionName"] == deployed["DlqRedriveFunctionName"]
            assert json.loads(request["Payload"]) == {"priority": "high", "dry_run": True}
            return {
                "FunctionError": "Unhandled",
                "LogResult": base64.b64encode(b"START RequestId: 1\nERROR boom\n").decode(),
                "Payload": io.BytesIO(b'{"errorMessage": "boom", "errorType": "ValidationError"}'),
            }

    target = DeployedTarget("herald-test", "us-east-1")
    target._session = _SessionWith(target._session, FailedInvoke())
    log = io.StringIO()

    # When a redrive is asked for, Then the error is raised with its type and message, and the log tail shown
    with pytest.raises(TargetError, match="DlqRedriveFunction failed: ValidationError: boom"):
        target.redrive({"priority": "high", "dry_run": True}, log)
    assert "ERROR boom" in log.getvalue()


class _SessionWith:
    """A boto3 session whose Lambda client is the given one (moto's Lambda needs Docker to invoke)."""

    def __init__(self, session: Any, lambda_client: Any):
        self._session, self._lambda = session, lambda_client

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._lambda if service == "lambda" else self._session.client(service, **kwargs)
