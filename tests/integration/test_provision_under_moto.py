"""The local stack provisions what the functions use from template.yaml, and leaves operations out on purpose."""

from __future__ import annotations

import pytest
from moto import mock_aws

from herald.adapters.clients import client
from herald_local.provision import provision
from herald_local.stack import emulator_parameters
from tests.integration.conftest import template


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client.cache_clear()
        yield
    client.cache_clear()


def test_an_alarm_email_given_locally_is_never_subscribed_and_no_alarm_or_log_group_is_made(aws: None) -> None:
    # Given the template deployed locally with an alarm email, as `make run ARGS="--parameter-overrides ..."` would
    parameters = {**emulator_parameters(template(), {}, client), "AlarmEmail": "oncall@example.com"}

    # When it is provisioned on moto
    stack = provision(template(), parameters, client("cloudformation"), client("sns"), "us-east-1")

    # Then no one is mailed: SNS holds only the notifications and email feedback topics and their SQS subscriptions
    sns = client("sns")
    subscriptions = sns.list_subscriptions()["Subscriptions"]
    assert sorted(s["Protocol"] for s in subscriptions) == ["sqs", "sqs", "sqs", "sqs"]
    assert sorted(t["TopicArn"] for t in sns.list_topics()["Topics"]) == sorted(
        [stack.ref("NotificationsTopic"), stack.ref("EmailFeedbackTopic")]
    )
    # And no alarm, dashboard or log group was made (nothing watches a laptop)
    assert client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert client("cloudwatch").list_dashboards()["DashboardEntries"] == []
    assert client("logs").describe_log_groups()["logGroups"] == []
    # And every queue and table the functions use exists
    queues = set(client("sqs").list_queues()["QueueUrls"])
    for name, resource in template().resources.items():
        if resource["Type"] == "AWS::SQS::Queue":
            assert stack.ref(name) in queues, name
    tables = set(client("dynamodb").list_tables()["TableNames"])
    assert {stack.ref(t) for t in ("DevicesTable", "StatusTable", "InboxTable", "IdempotencyTable")} <= tables


def test_the_data_plane_is_what_the_functions_reach() -> None:
    # Given the translated template, When its data plane is chosen
    chosen = template().data_plane_ids()
    kinds = {name: r["Type"] for name, r in template().resources.items()}

    # Then it holds every queue and table, the notifications topic and its SQS subscriptions, and nothing of
    # operations: no alarm topic, email subscription, queue or topic policy, log group, alarm or dashboard
    assert {n for n, k in kinds.items() if k in ("AWS::SQS::Queue", "AWS::DynamoDB::Table")} <= chosen
    assert {kinds[n] for n in chosen} == {
        "AWS::SQS::Queue",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::SNS::Subscription",
    }
    assert "AlarmTopic" not in chosen and "AlarmEmailSubscription" not in chosen
