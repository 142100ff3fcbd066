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
    # Given each event source mapping, When its queue and function are read, Then visibility >= 6x timeout
    for source in template.event_sources:
        visibility = properties(template, source.queue)["VisibilityTimeout"]
        if isinstance(visibility, dict):  # a parameter: its default is what a plain deploy gets
            visibility = int(template.parameter_defaults()[visibility["Ref"]])
        assert visibility >= 6 * template.functions[source.function].timeout, source.name


def test_every_consumed_queue_dead_letters_after_at_least_5_receives_into_a_longer_lived_dlq(
    template: HeraldTemplate,
) -> None:
    parameters = template.parameter_defaults()
    for source in template.event_sources:
        queue = properties(template, source.queue)
        redrive = queue["RedrivePolicy"]
        max_receive = redrive["maxReceiveCount"]
        if isinstance(max_receive, dict):  # a Ref to the MaxReceiveCount parameter
            max_receive = parameters[max_receive["Ref"]]
        assert int(max_receive) >= 5, source.queue
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
    assert set(tables) == {"DevicesTable", "StatusTable", "InboxTable"}
    assert all(t["BillingMode"] == "PAY_PER_REQUEST" for t in tables.values())
    for name in ("StatusTable", "InboxTable"):
        assert tables[name]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_functions_run_python_312_on_arm64(template: HeraldTemplate) -> None:
    for name in template.functions:
        props = properties(template, name)
        assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["arm64"]), name
