"""The floor of AWS calls per notification, and how counted calls are sorted into its lines."""

from __future__ import annotations

import pytest

from bench.floor import (
    API_INTAKE_SEND,
    API_STATUS_ACCEPTED,
    CURRENT,
    DELIVER_PROVIDER,
    DELIVER_STATUS,
    FANOUT_DEVICE_QUERY,
    FANOUT_HISTORY,
    FANOUT_PREFERENCES,
    FANOUT_PUBLISH,
    FANOUT_STATUS,
    INTAKE_DELETE,
    INTAKE_RECEIVE,
    OTHER,
    PRIORITY_DELETE,
    PRIORITY_RECEIVE,
    Batching,
    Design,
    Line,
    Shape,
    floor_per_notification,
    floor_total,
    line_of,
)

NORMAL = Batching(intake=10, priority=10)


def test_one_device_costs_the_fixed_calls_plus_one_delivery():
    # Given one recipient with one device, batches of 10 on both queues
    floor = floor_per_notification(Shape(1, 1), NORMAL)

    # Then: api 2, fan-out 3.1 (query, the page's one record, which is the recipient's history entry too,
    # preferences read, and a tenth of a publish shared with the intake batch's nine others), deliver 1
    # provider + 2 status writes, and four tenths of mapping calls
    assert floor[API_INTAKE_SEND] == 1
    assert floor[API_STATUS_ACCEPTED] == 1
    assert floor[FANOUT_DEVICE_QUERY] == 1
    assert floor[FANOUT_PUBLISH] == pytest.approx(0.1)
    assert floor[FANOUT_STATUS] == 1
    assert (floor[FANOUT_PREFERENCES], floor[FANOUT_HISTORY]) == (1, 0)
    assert floor[DELIVER_PROVIDER] == 1
    assert floor[DELIVER_STATUS] == 2
    assert floor[INTAKE_RECEIVE] == pytest.approx(0.1)
    assert floor[PRIORITY_DELETE] == pytest.approx(0.1)
    assert floor_total(Shape(1, 1), NORMAL) == pytest.approx(8.5)


def test_a_page_of_a_full_publish_or_more_publishes_alone_and_a_smaller_one_shares():
    # Given notifications to 3, 9, 10 and 11 recipients with one device each (one message each)
    publishes = {r: floor_per_notification(Shape(r, 1), NORMAL)[FANOUT_PUBLISH] for r in (3, 9, 10, 11)}

    # Then below 10 messages a notification pays its share of full PublishBatch calls; from 10 on, its own calls
    assert publishes == {3: pytest.approx(0.3), 9: pytest.approx(0.9), 10: 1, 11: 2}


def test_a_recipients_devices_travel_as_one_message_up_to_ten():
    # Given one recipient with 3, 10, 11 and 100 devices
    shapes = {d: Shape(1, d) for d in (3, 10, 11, 100)}

    # Then 1, 1, 2 and 10 messages: a tenth, a tenth, two tenths and one PublishBatch, and the priority
    # queue's receives amortised over them
    assert {d: shape.messages for d, shape in shapes.items()} == {3: 1, 10: 1, 11: 2, 100: 10}
    publishes = {d: floor_per_notification(shape, NORMAL)[FANOUT_PUBLISH] for d, shape in shapes.items()}
    assert publishes == {3: pytest.approx(0.1), 10: pytest.approx(0.1), 11: pytest.approx(0.2), 100: 1}
    assert floor_per_notification(shapes[100], NORMAL)[PRIORITY_RECEIVE] == pytest.approx(1)


def test_a_hundred_devices_batch_their_publishes_and_the_fan_out_still_writes_once():
    # Given one recipient with 100 devices
    floor = floor_per_notification(Shape(1, 100), NORMAL)

    # Then 10 messages of 10 devices in 1 PublishBatch, 1 fan-out status write whatever the count, 100 provider
    # calls, and 20 status writes: a claim and an outcome for each message's group of 10
    assert floor[FANOUT_STATUS] == 1
    assert floor[FANOUT_PUBLISH] == 1
    assert floor[DELIVER_PROVIDER] == 100
    assert floor[DELIVER_STATUS] == 20
    assert floor[PRIORITY_RECEIVE] == pytest.approx(1)
    # (api 2; fan-out query, publish, the page record that is the history entry, preferences; deliver;
    # intake receive and delete; priority receive and delete)
    assert floor_total(Shape(1, 100), NORMAL) == pytest.approx(2 + 1 + 1 + 1 + 1 + 100 + 20 + 0.2 + 2)


def test_grouped_status_writes_cost_two_per_group_of_a_recipients_deliveries_in_one_message():
    # Given two recipients with 1, 2, 3, 5, 10 and 11 devices, deliver batches of 10 messages
    writes = {d: floor_per_notification(Shape(2, d), NORMAL)[DELIVER_STATUS] for d in (1, 2, 3, 5, 10, 11)}

    # Then up to 10 devices are one message and one group per recipient (4 writes), whatever divides the batch
    # (a batch never cuts a message); 11 are two messages each
    assert writes == {1: 4, 2: 4, 3: 4, 5: 4, 10: 4, 11: 8}


def test_a_group_is_also_cut_at_the_sends_a_deliver_invocation_makes_at_once():
    # Given one recipient with 100 devices, batches of 30, and 10 sends at once
    batching = Batching(intake=10, priority=30, sends=10)

    # Then 100 deliveries make 10 groups (20 writes), as do their 10 messages; with 5 sends at once, 20 groups
    assert floor_per_notification(Shape(1, 100), batching)[DELIVER_STATUS] == 20
    assert floor_per_notification(Shape(1, 100), Batching(intake=10, priority=30, sends=5))[DELIVER_STATUS] == 40
    assert floor_per_notification(Shape(1, 3), batching)[DELIVER_STATUS] == 2


def test_many_recipients_cost_one_device_query_each():
    # Given 1,000 recipients with one device each
    floor = floor_per_notification(Shape(1000, 1), NORMAL)

    # Then a query per recipient, and the deliveries batch as if they were one user's; preferences are
    # read 100 users a call, history written 25 a call
    assert floor[FANOUT_DEVICE_QUERY] == 1000
    assert floor[FANOUT_STATUS] == 1
    assert floor[FANOUT_PUBLISH] == 100
    assert (floor[FANOUT_PREFERENCES], floor[FANOUT_HISTORY]) == (10, 40)


def test_sqs_hands_out_at_most_ten_messages_per_call_whatever_the_batch_size():
    # Given the low queue's mapping (batches of 50) and the high one's (batches of 5)
    low = floor_per_notification(Shape(1, 100), Batching(intake=10, priority=50))
    high = floor_per_notification(Shape(1, 100), Batching(intake=10, priority=5))

    # Then receives and deletes of its 10 messages are amortised over 10 and over 5
    assert low[PRIORITY_RECEIVE] == pytest.approx(1)
    assert low[PRIORITY_DELETE] == pytest.approx(1)
    assert high[PRIORITY_RECEIVE] == pytest.approx(2)


@pytest.mark.parametrize(
    ("call", "line"),
    [
        (("herald", "api", "sqs", "SendMessage", "HighIntakeQueue"), API_INTAKE_SEND),
        (("herald", "api", "dynamodb", "PutItem", "StatusTable"), API_STATUS_ACCEPTED),
        (("herald", "fanout", "dynamodb", "Query", "DevicesTable"), FANOUT_DEVICE_QUERY),
        (("herald", "fanout", "dynamodb", "BatchWriteItem", "StatusTable"), OTHER),
        (("herald", "fanout", "sns", "PublishBatch", "NotificationsTopic"), FANOUT_PUBLISH),
        (("herald", "fanout", "dynamodb", "UpdateItem", "StatusTable"), FANOUT_STATUS),
        (("herald", "fanout", "dynamodb", "UpdateItem", "HistoryTable"), FANOUT_STATUS),
        (("herald", "fanout", "dynamodb", "BatchGetItem", "PreferencesTable"), FANOUT_PREFERENCES),
        (("herald", "fanout", "dynamodb", "BatchWriteItem", "HistoryTable"), FANOUT_HISTORY),
        (("herald", "deliver", "sns", "Publish", "endpoint"), DELIVER_PROVIDER),
        (("herald", "deliver", "ses", "SendEmail", ""), DELIVER_PROVIDER),
        (("herald", "deliver", "dynamodb", "PutItem", "InboxTable"), DELIVER_PROVIDER),
        (("herald", "deliver", "dynamodb", "UpdateItem", "StatusTable"), DELIVER_STATUS),
        (("poller", "", "sqs", "ReceiveMessage", "NormalIntakeQueue"), INTAKE_RECEIVE),
        (("poller", "", "sqs", "DeleteMessageBatch", "LowIntakeQueue"), INTAKE_DELETE),
        (("poller", "", "sqs", "ReceiveMessage", "HighQueue"), PRIORITY_RECEIVE),
        (("poller", "", "sqs", "DeleteMessageBatch", "LowQueue"), PRIORITY_DELETE),
        (("herald", "deliver", "sqs", "ChangeMessageVisibility", "NormalQueue"), OTHER),
        (("herald", "api", "dynamodb", "Query", "StatusTable"), OTHER),
        (("bench", "", "dynamodb", "PutItem", "DevicesTable"), OTHER),
    ],
)
def test_each_counted_call_lands_on_its_line(call: tuple[str, str, str, str, str], line: str):
    assert line_of(*call) == line


def test_a_new_design_is_its_lines_and_its_floor_follows():
    # Given a design where a deliver batch writes one claim and one outcome per notification it holds, not
    # per recipient (written as CURRENT is), and everything else as built
    grouped = Design(
        "grouped status writes",
        tuple(
            Line(DELIVER_STATUS, line.calls, per_notification=2) if line.name == DELIVER_STATUS else line
            for line in CURRENT.lines
        ),
    )

    # Then its floor for 3 recipients of 1 device has 2 deliver status writes where CURRENT (per recipient)
    # has 6, and counted calls still land on the same lines
    shape = Shape(3, 1)
    assert floor_per_notification(shape, NORMAL, grouped)[DELIVER_STATUS] == 2
    assert floor_per_notification(shape, NORMAL)[DELIVER_STATUS] == 6
    assert floor_total(shape, NORMAL) - floor_total(shape, NORMAL, grouped) == pytest.approx(4)
    assert line_of("herald", "deliver", "dynamodb", "UpdateItem", "StatusTable", grouped) == DELIVER_STATUS


def test_per_priority_intake_lanes_are_intake_lines_by_their_names():
    assert line_of("herald", "api", "sqs", "SendMessage", "NormalIntakeQueue") == API_INTAKE_SEND
    assert line_of("poller", "", "sqs", "ReceiveMessage", "HighIntakeQueue") == INTAKE_RECEIVE
    assert line_of("poller", "", "sqs", "ChangeMessageVisibility", "NormalQueue") == OTHER
