"""The template's promises, read from template.yaml as SAM translates it: what AWS will run."""

from __future__ import annotations

from typing import Any

import pytest

from herald_local.template import HeraldTemplate

PRIORITY_FUNCTIONS = {"high": "DeliverHighFunction", "normal": "DeliverNormalFunction", "low": "DeliverLowFunction"}


@pytest.fixture(scope="module")
def template() -> HeraldTemplate:
    return HeraldTemplate.load()


def queue_of(template: HeraldTemplate, function: str) -> str:
    [source] = [s for s in template.event_sources if s.function == function]
    return source.queue


def properties(template: HeraldTemplate, logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = template.resources[logical_id]["Properties"]
    return props


def test_every_sqs_triggered_queue_hides_a_message_6x_its_function_timeout(template: HeraldTemplate) -> None:
    # Given each event source mapping, When its queue and function are read with the parameters' defaults,
    # Then visibility >= 6x timeout
    for source in template.event_sources:
        visibility = int(template.default_of(properties(template, source.queue)["VisibilityTimeout"]))
        assert visibility >= 6 * int(template.default_of(template.functions[source.function].timeout)), source.name


def test_every_consumed_queue_dead_letters_after_at_least_5_receives_into_a_longer_lived_dlq(
    template: HeraldTemplate,
) -> None:
    for source in template.event_sources:
        queue = properties(template, source.queue)
        redrive = queue["RedrivePolicy"]
        assert int(template.default_of(redrive["maxReceiveCount"])) >= 5, source.queue
        dlq = properties(template, redrive["deadLetterTargetArn"]["Fn::GetAtt"][0])
        assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"], source.queue


def test_every_consumer_reports_batch_item_failures(template: HeraldTemplate) -> None:
    assert template.event_sources
    assert all(source.report_batch_item_failures for source in template.event_sources)


def test_high_priority_gets_small_fast_batches_and_the_most_concurrency(template: HeraldTemplate) -> None:
    # Given the three deliver functions' event source mappings
    sources = {
        priority: next(s for s in template.event_sources if s.function == function)
        for priority, function in PRIORITY_FUNCTIONS.items()
    }
    high, normal, low = sources["high"], sources["normal"], sources["low"]

    # Then high batches smallest with no window and the most concurrency; low the reverse, capped
    assert high.batching_window == 0
    assert high.batch_size < normal.batch_size < low.batch_size
    assert low.batching_window > 0
    assert high.maximum_concurrency and normal.maximum_concurrency and low.maximum_concurrency
    assert high.maximum_concurrency > normal.maximum_concurrency > low.maximum_concurrency
    # And each reads its own priority's queue, which the topic fills for that priority only
    for priority, function in PRIORITY_FUNCTIONS.items():
        queue = queue_of(template, function)
        [subscription] = [
            r["Properties"]
            for r in template.resources.values()
            if r["Type"] == "AWS::SNS::Subscription" and r["Properties"]["Endpoint"]["Fn::GetAtt"][0] == queue
        ]
        assert subscription["FilterPolicy"] == {"priority": [priority]}
        assert subscription["RawMessageDelivery"] is True
        assert template.functions[function].environment["PRIORITY"] == priority


def test_every_route_requires_the_api_key_and_the_usage_plan_throttles(template: HeraldTemplate) -> None:
    [api] = template.apis
    assert {(r.method, r.path) for r in api.routes} >= {
        ("PUT", "/users/{user_id}/devices/{device_id}"),
        ("DELETE", "/users/{user_id}/devices/{device_id}"),
        ("GET", "/users/{user_id}/devices"),
        ("POST", "/notifications"),
        ("GET", "/notifications/{notification_id}"),
        ("GET", "/users/{user_id}/inbox"),
        ("GET", "/queues"),
        ("GET", "/openapi.json"),
    }
    assert all(route.api_key_required for route in api.routes)
    assert api.rate_limit and api.burst_limit


def test_status_and_inbox_items_expire_and_tables_bill_on_demand(template: HeraldTemplate) -> None:
    tables = {k: r["Properties"] for k, r in template.resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert set(tables) == {
        "DevicesTable",
        "StatusTable",
        "InboxTable",
        "IdempotencyTable",
        "PreferencesTable",
        "TemplatesTable",
        "HistoryTable",
    }
    assert all(t["BillingMode"] == "PAY_PER_REQUEST" for t in tables.values())
    for name in ("StatusTable", "InboxTable", "IdempotencyTable", "HistoryTable"):
        assert tables[name]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_functions_run_python_312_on_arm64(template: HeraldTemplate) -> None:
    for name in template.functions:
        props = properties(template, name)
        assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["arm64"]), name


def statements_on(template: HeraldTemplate, role: str, resource: str) -> list[dict[str, Any]]:
    """The statements of a function's role that name `resource` (by Ref or GetAtt) among their resources."""
    found = []
    policies = []
    for policy in properties(template, role).get("Policies", []):
        # A conditional policy ({"Fn::If": [condition, policy, AWS::NoValue]}) counts with both branches.
        branches = policy["Fn::If"][1:] if "Fn::If" in policy else [policy]
        policies.extend(branch for branch in branches if "PolicyDocument" in branch)
    for policy in policies:
        for statement in policy["PolicyDocument"]["Statement"]:
            resources = statement.get("Resource", [])
            if resource in repr(resources if isinstance(resources, list) else [resources]):
                found.append(statement)
    return found


def test_only_the_api_function_touches_idempotency_keys_and_only_as_it_needs(template: HeraldTemplate) -> None:
    # Given the translated template, When the roles are read
    roles = [name for name, r in template.resources.items() if r["Type"] == "AWS::IAM::Role"]

    # Then the API function finds the table through its environment, may claim, read, complete and
    # release a key, and nothing else; no other function may touch the table
    assert template.functions["ApiFunction"].environment["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    [statement] = statements_on(template, "ApiFunctionRole", "IdempotencyTable")
    assert sorted(statement["Action"]) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    others = [role for role in roles if role != "ApiFunctionRole"]
    assert [role for role in others if statements_on(template, role, "IdempotencyTable")] == []


def test_the_api_function_may_read_queue_depths_and_peek_at_dead_letters_only(template: HeraldTemplate) -> None:
    # Given the API function's role, When its SQS statements are read
    dlqs = ["IntakeDeadLetterQueue", "HighDeadLetterQueue", "NormalDeadLetterQueue", "LowDeadLetterQueue"]
    receive = [
        s for s in statements_on(template, "ApiFunctionRole", "DeadLetterQueue") if "sqs:ReceiveMessage" in s["Action"]
    ]

    # Then ReceiveMessage (a peek, for the age of the oldest dead letter) is allowed on the four DLQs alone,
    # and never with DeleteMessage
    [statement] = receive
    assert sorted(r["Fn::GetAtt"][0] for r in statement["Resource"]) == sorted(dlqs)
    assert "sqs:DeleteMessage" not in repr(properties(template, "ApiFunctionRole")["Policies"])


def test_low_priority_makes_fewer_provider_calls_at_once_than_high(template: HeraldTemplate) -> None:
    # Given the deliver functions' PARALLEL_SENDS at the parameters' defaults
    sends = {
        priority: int(template.default_of(template.functions[function].environment["PARALLEL_SENDS"]))
        for priority, function in PRIORITY_FUNCTIONS.items()
    }

    # Then a newsletter flood runs fewer sends at once than password resets do
    assert sends["low"] < sends["normal"] <= sends["high"]
