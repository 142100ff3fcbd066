"""What the person on call is given: alarms on every queue, function and the API, sent to one topic; a
log group per function that expires; a dashboard of all of it and of Herald's own metrics.

The checks are written over whatever the template holds: a queue or function added later without its
alarms, log group or dashboard line fails them. The last tests prove that on a template grown by one.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from herald.observability import METRIC_DIMENSIONS
from herald_local.template import HeraldTemplate

# Herald's own metrics (Powertools Metrics, EMF) and the dimensions each is published with.
HERALD_METRICS = {
    "DeliveriesSent": {"channel", "priority", "service"},
    "DeliveriesFailed": {"channel", "priority", "service"},
    "DeliveriesRetried": {"channel", "priority", "service"},
    "DeliveriesDeadLettered": {"channel", "priority", "service"},
    "DeliveriesSkipped": {"channel", "priority", "service"},
    "DeliveriesDeferred": {"channel", "priority", "service"},
    "AcceptedToSentLatency": {"priority", "service"},
    "FanoutSize": {"priority", "service"},
    "DevicesDeactivated": {"channel", "reason", "service"},
    "NotificationsReleased": {"priority", "service"},
    "DeliveriesReleased": {"channel", "priority", "service"},
    "HoldHops": {"kind", "service"},
    "ReleaseLateness": {"kind", "service"},
    "HoldsDeadLettered": {"kind", "service"},
}


@pytest.fixture(scope="module")
def template() -> HeraldTemplate:
    return HeraldTemplate.load()


def of_type(template: HeraldTemplate, kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template.resources.items() if r["Type"] == kind}


def dead_letter_queues(template: HeraldTemplate) -> set[str]:
    return {
        r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for r in of_type(template, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in r.get("Properties", {})
    }


def alarms_on(template: HeraldTemplate, namespace: str, metric: str, dimensions: dict[str, Any]) -> list[str]:
    return [
        name
        for name, alarm in of_type(template, "AWS::CloudWatch::Alarm").items()
        if alarm["Properties"]["Namespace"] == namespace
        and alarm["Properties"]["MetricName"] == metric
        and {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]} == dimensions
    ]


def fires_at_one(alarm: dict[str, Any]) -> bool:
    props = alarm["Properties"]
    return (props["ComparisonOperator"], props["Threshold"]) in {
        ("GreaterThanThreshold", 0),
        ("GreaterThanOrEqualToThreshold", 1),
    }


def the_api(template: HeraldTemplate) -> tuple[Any, Any]:
    """The REST API's name and stage, as API Gateway's metrics name them."""
    [api] = of_type(template, "AWS::ApiGateway::RestApi").values()
    [stage] = of_type(template, "AWS::ApiGateway::Stage").values()
    return api["Properties"]["Name"], stage["Properties"]["StageName"]


def missing_alarms(template: HeraldTemplate) -> list[str]:
    """Each queue, function or API signal the on-call person would not hear about."""
    problems = []
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    dlqs = dead_letter_queues(template)
    for queue in of_type(template, "AWS::SQS::Queue"):
        dimension = {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}}
        if queue in dlqs:
            found = alarms_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible", dimension)
            if not any(fires_at_one(alarms[a]) for a in found):
                problems.append(f"{queue}: no alarm when it holds a message")
        elif not alarms_on(template, "AWS/SQS", "ApproximateAgeOfOldestMessage", dimension):
            problems.append(f"{queue}: no alarm on the age of its oldest message")
    for function in of_type(template, "AWS::Lambda::Function"):
        for metric in ("Errors", "Throttles"):
            found = alarms_on(template, "AWS/Lambda", metric, {"FunctionName": {"Ref": function}})
            if not any(fires_at_one(alarms[a]) for a in found):
                problems.append(f"{function}: no alarm on {metric}")
    name, stage = the_api(template)
    api = {"ApiName": name, "Stage": stage}
    if not alarms_on(template, "AWS/ApiGateway", "5XXError", api):
        problems.append("the API: no alarm on 5xx")
    if not any(
        alarms[a]["Properties"].get("ExtendedStatistic") == "p99"
        for a in alarms_on(template, "AWS/ApiGateway", "Latency", api)
    ):
        problems.append("the API: no alarm on p99 latency")
    return problems


def missing_log_groups(template: HeraldTemplate) -> list[str]:
    problems = []
    groups = of_type(template, "AWS::Logs::LogGroup")
    used: dict[str, str] = {}
    for function, resource in of_type(template, "AWS::Lambda::Function").items():
        group = resource["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        if group not in groups:
            problems.append(f"{function}: logs to no log group of the template")
        elif groups[group]["Properties"].get("RetentionInDays") != {"Ref": "LogRetentionDays"}:
            problems.append(f"{function}: its log group does not expire after LogRetentionDays")
        elif group in used:
            problems.append(f"{function}: shares {group} with {used[group]}")
        else:
            used[group] = function
    return problems


def dashboard(template: HeraldTemplate) -> dict[str, Any]:
    """The dashboard body, each ${X} of its Fn::Sub left as "<X>"."""
    [resource] = of_type(template, "AWS::CloudWatch::Dashboard").values()
    text = resource["Properties"]["DashboardBody"]["Fn::Sub"]
    text = re.sub(r"\$\{([^}!]+)\}", r"<\1>", text).replace("${!", "${")
    body: dict[str, Any] = json.loads(text)
    return body


def missing_from_dashboard(template: HeraldTemplate) -> list[str]:
    body = dashboard(template)
    shown_alarms = {a for w in body["widgets"] if w["type"] == "alarm" for a in w["properties"]["alarms"]}
    lines = [line for w in body["widgets"] if w["type"] == "metric" for line in w["properties"]["metrics"]]
    metrics = {tuple(x for x in line if isinstance(x, str)) for line in lines}
    expressions = [x["expression"] for line in lines for x in line if isinstance(x, dict) and "expression" in x]
    problems = [
        f"{a}: not on the dashboard"
        for a in of_type(template, "AWS::CloudWatch::Alarm")
        if f"<{a}.Arn>" not in shown_alarms
    ]
    dlqs = dead_letter_queues(template)
    for queue in of_type(template, "AWS::SQS::Queue"):
        metric = "ApproximateNumberOfMessagesVisible" if queue in dlqs else "ApproximateAgeOfOldestMessage"
        if ("AWS/SQS", metric, "QueueName", f"<{queue}.QueueName>") not in metrics:
            problems.append(f"{queue}: no {metric} on the dashboard")
    for function in of_type(template, "AWS::Lambda::Function"):
        for metric in ("Errors", "Throttles"):
            if ("AWS/Lambda", metric, "FunctionName", f"<{function}>") not in metrics:
                problems.append(f"{function}: no {metric} on the dashboard")
    for metric in ("5XXError", "Latency"):
        if ("AWS/ApiGateway", metric, "ApiName", "<AWS::StackName>", "Stage", "<Stage>") not in metrics:
            problems.append(f"the API: no {metric} on the dashboard")
    namespaces = {str(f.environment.get("POWERTOOLS_METRICS_NAMESPACE")) for f in template.functions.values()}
    for name, dimensions in HERALD_METRICS.items():
        schema = "{" + ",".join(sorted(namespaces) + sorted(dimensions)) + "}"
        if not any(schema in e and f'MetricName="{name}"' in e for e in expressions):
            problems.append(f"{name}: no SEARCH of {schema} on the dashboard")
    return problems


def test_the_metrics_listed_here_are_exactly_those_the_functions_emit():
    # Given the metrics and dimensions herald.observability declares (tests/unit/test_metrics.py holds every
    # document the functions print to them), Then the dashboard is checked against exactly those
    emitted = {name: {*dimensions, "service"} for name, dimensions in METRIC_DIMENSIONS.items()}
    assert emitted == HERALD_METRICS


def test_every_queue_function_and_the_api_have_their_alarms(template: HeraldTemplate) -> None:
    # Given every SQS queue (a DLQ is one some queue's redrive policy targets), function and the API
    assert len(dead_letter_queues(template)) >= 4 and len(of_type(template, "AWS::Lambda::Function")) >= 6
    # Then a DLQ alarms on one message held, a work queue on the age of its oldest, a function on any
    # error or throttle, the API on 5xx and on p99 latency
    assert missing_alarms(template) == []


def test_every_alarm_tells_the_alarm_topic_when_it_goes_off_and_when_it_clears(template: HeraldTemplate) -> None:
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    topics = {json.dumps(a["Properties"]["AlarmActions"]) for a in alarms.values()}
    assert topics == {json.dumps([{"Ref": "AlarmTopic"}])}
    for name, alarm in alarms.items():
        assert alarm["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}], name
        description = alarm["Properties"]["AlarmDescription"]["Fn::Sub"]
        assert any(command in description for command in ("herald ", "sam logs ", "aws ")), (
            f"{name}: its description names no command to answer it"
        )


def test_the_alarm_topic_mails_the_alarm_email_parameter_only_when_one_is_given(template: HeraldTemplate) -> None:
    # Given the subscriptions of the alarm topic
    subscriptions = [
        r
        for r in of_type(template, "AWS::SNS::Subscription").values()
        if r["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}
    ]
    # Then one, by email to the AlarmEmail parameter, under a condition that is false when it is empty
    [subscription] = subscriptions
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert template.cfn["Conditions"][subscription["Condition"]] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    assert template.cfn["Parameters"]["AlarmEmail"]["Default"] == ""


def test_every_function_logs_to_its_own_group_which_expires(template: HeraldTemplate) -> None:
    assert missing_log_groups(template) == []
    assert (
        template.cfn["Parameters"]["LogRetentionDays"]["Default"]
        in (template.cfn["Parameters"]["LogRetentionDays"]["AllowedValues"])
    )


def test_the_dashboard_shows_every_alarm_queue_function_the_api_and_heralds_metrics(template: HeraldTemplate) -> None:
    # Given the dashboard body (valid JSON once CloudFormation substitutes its references)
    assert dashboard(template)["widgets"]
    # Then it shows every alarm, each queue's alarmed metric, each function's errors and throttles, the
    # API's 5xx and latency, and each of Herald's own metrics in the functions' metrics namespace
    assert missing_from_dashboard(template) == []


def grown(template: HeraldTemplate) -> HeraldTemplate:
    """The template with one more intake queue, its DLQ and one more function, as a later change might add."""
    cfn = copy.deepcopy(template.cfn)
    cfn["Resources"]["UrgentIntakeQueue"] = copy.deepcopy(cfn["Resources"]["HighIntakeQueue"])
    cfn["Resources"]["UrgentIntakeQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] = {
        "Fn::GetAtt": ["UrgentIntakeDeadLetterQueue", "Arn"]
    }
    cfn["Resources"]["UrgentIntakeDeadLetterQueue"] = copy.deepcopy(cfn["Resources"]["HighIntakeDeadLetterQueue"])
    cfn["Resources"]["UrgentFanoutFunction"] = copy.deepcopy(cfn["Resources"]["FanoutHighFunction"])
    bigger = HeraldTemplate(cfn=cfn)
    bigger._describe()
    return bigger


def test_a_queue_or_function_added_without_alarms_dashboard_lines_or_log_group_fails_the_checks(
    template: HeraldTemplate,
) -> None:
    # Given the template grown by an intake queue, its DLQ and a function, and nothing else
    bigger = grown(template)

    # Then each check names what is missing for each of them
    assert missing_alarms(bigger) == [
        "UrgentIntakeQueue: no alarm on the age of its oldest message",
        "UrgentIntakeDeadLetterQueue: no alarm when it holds a message",
        "UrgentFanoutFunction: no alarm on Errors",
        "UrgentFanoutFunction: no alarm on Throttles",
    ]
    assert missing_log_groups(bigger) == [
        "UrgentFanoutFunction: shares FanoutHighFunctionLogGroup with FanoutHighFunction"
    ]
    assert sorted(missing_from_dashboard(bigger)) == [
        "UrgentFanoutFunction: no Errors on the dashboard",
        "UrgentFanoutFunction: no Throttles on the dashboard",
        "UrgentIntakeDeadLetterQueue: no ApproximateNumberOfMessagesVisible on the dashboard",
        "UrgentIntakeQueue: no ApproximateAgeOfOldestMessage on the dashboard",
    ]
