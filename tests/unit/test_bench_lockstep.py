"""Driving the mappings in lockstep: batch fill by construction, calls grouped as the cost model reads them."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from bench.calls import CallKey, Origin, Tally
from bench.lockstep import CallCount, Invocation, call_counts, fill_of, lanes_of, message_facts, provider_calls


@pytest.mark.parametrize(
    ("batch", "window", "per_second", "fill"),
    [
        (10, 0, 1000.0, 1),  # no window: Lambda invokes on the first message, whatever the rate
        (10, 1, 30.0, 10),  # the normal lane at 10 notifications/s x 3 deliveries: full
        (10, 1, 10.0, 10),  # exactly batch / window a second: full
        (10, 1, 4.0, 4),  # too few arrivals to fill the window
        (50, 5, 10.0, 50),  # the low lane
        (50, 5, 0.1, 1),  # a trickle: one message per batch, never none
    ],
)
def test_a_mappings_batch_fill_follows_from_its_window_and_the_arrival_rate(
    batch: int, window: int, per_second: float, fill: int
):
    assert fill_of(batch, window, per_second) == fill


def test_calls_are_grouped_by_role_with_empty_receives_left_out():
    # Given a tally with a poller's receives (one of three empty), its deletes, and a Herald call
    receive = CallKey(Origin.POLLER, "", "sqs", "ReceiveMessage", "stack-NormalQueue-1")
    delete = CallKey(Origin.POLLER, "", "sqs", "DeleteMessageBatch", "stack-NormalQueue-1")
    put = CallKey(Origin.HERALD, "api", "dynamodb", "PutItem", "stack-StatusTable-1")
    tally = Tally(
        calls=Counter({receive: 3, delete: 2, put: 1}),
        empty_receives=Counter({receive: 1}),
        units=Counter({receive: 3, delete: 2, put: 1}),
    )
    role = {"stack-NormalQueue-1": "NormalQueue", "stack-StatusTable-1": "StatusTable"}.__getitem__

    # Then the poller's calls are its two receives that returned messages and its deletes, by role
    assert call_counts(tally, Origin.POLLER, role) == (
        CallCount("sqs", "DeleteMessageBatch", "NormalQueue", 2, 2),
        CallCount("sqs", "ReceiveMessage", "NormalQueue", 2, 2),
    )
    assert call_counts(tally, Origin.HERALD, role) == (CallCount("dynamodb", "PutItem", "StatusTable", 1, 1),)


def test_a_message_names_its_notification_and_channel():
    assert message_facts('{"notification_id": "n1", "channel": "push"}') == ("n1", "push")
    assert message_facts('{"notification_id": "n2", "title": "t"}') == ("n2", "")
    assert message_facts('{"job": {"notification_id": "n3", "channel": "push"}, "more": [{"device_id": "b"}]}') == (
        "n3",
        "push",
    )
    assert message_facts("not json") == ("", "")
    assert message_facts("[1]") == ("", "")


def test_a_batch_overlaps_as_many_records_as_the_function_and_its_channels_allow():
    settings = SimpleNamespace(parallel_sends=10, push_parallel_sends=10, sms_parallel_sends=5)
    function = SimpleNamespace(dependencies=SimpleNamespace(settings=settings))
    assert lanes_of(function, {"push"}) == 10
    assert lanes_of(function, {"push", "sms"}) == 5
    assert lanes_of(SimpleNamespace(dependencies=SimpleNamespace()), {"push"}) == 1  # the fan-out: one at a time


def test_deliveries_are_counted_by_their_provider_calls():
    calls = (
        CallCount("sns", "Publish", "endpoint", 3, 3),
        CallCount("dynamodb", "PutItem", "InboxTable", 2, 2),
        CallCount("ses", "SendEmail", "", 1, 1),
        CallCount("dynamodb", "UpdateItem", "StatusTable", 12, 12),
        CallCount("sns", "PublishBatch", "NotificationsTopic", 1, 1),
    )
    assert provider_calls([Invocation("DeliverNormalFunction", "deliver", 6, 2, 10, calls)]) == 6
