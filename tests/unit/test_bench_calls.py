"""The call counter: botocore hooks count calls by who made them, service, operation and resource."""

from __future__ import annotations

from collections import Counter

import boto3
from botocore.stub import Stubber

from bench.calls import CallCounter, CallKey, Origin, Tally, entries_of, resource_of, thread_group

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/herald-IntakeQueue-1A2B"


def test_resources_are_named_as_the_call_names_them():
    assert resource_of("sqs", {"QueueUrl": QUEUE}) == "herald-IntakeQueue-1A2B"
    assert resource_of("dynamodb", {"TableName": "Status"}) == "Status"
    assert resource_of("dynamodb", {"RequestItems": {"B": [], "A": []}}) == "A,B"
    assert resource_of("sns", {"TopicArn": "arn:aws:sns:us-east-1:1:herald-Topic"}) == "herald-Topic"
    assert resource_of("sns", {"TargetArn": "arn:aws:sns:us-east-1:1:endpoint/GCM/app/1"}) == "endpoint"
    assert resource_of("sns", {"PhoneNumber": "+14155550100"}) == "phone"
    assert resource_of("ses", {"Source": "a@example.com"}) == ""


def test_a_batch_call_carries_its_entries_and_any_other_call_one():
    assert entries_of("SendMessageBatch", {"Entries": [{}, {}, {}]}) == 3
    assert entries_of("PublishBatch", {"PublishBatchRequestEntries": [{}] * 10}) == 10
    assert entries_of("BatchWriteItem", {"RequestItems": {"T": [{}] * 25, "U": [{}]}}) == 26
    assert entries_of("PutItem", {"Item": {}}) == 1


def test_a_pool_thread_is_grouped_under_its_mapping():
    assert thread_group("DeliverHighFunctionHighQueue_3") == "DeliverHighFunctionHighQueue"
    assert thread_group("poll-DeliverHighFunctionHighQueue") == "poll-DeliverHighFunctionHighQueue"
    assert thread_group("MainThread") == "MainThread"


def test_since_keeps_what_was_counted_after_a_snapshot():
    key = CallKey(Origin.HERALD, "api", "sqs", "SendMessage", "q")
    earlier = Tally(calls=Counter({key: 2}))
    later = Tally(calls=Counter({key: 5}))
    assert later.since(earlier).calls[key] == 3


def test_the_hooks_count_each_call_with_its_entries_and_received_messages():
    # Given a counter hooked on an SQS client whose answers are stubbed
    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    counter = CallCounter()
    counter.hook(sqs, sqs)  # hooking twice counts once
    with Stubber(sqs) as stub:
        stub.add_response("send_message_batch", {"Successful": [], "Failed": []})
        stub.add_response("receive_message", {"Messages": [{"MessageId": "1", "ReceiptHandle": "r", "Body": "b"}]})
        stub.add_response("receive_message", {})

        # When a batch is sent and the queue is read twice (the second time empty)
        sqs.send_message_batch(QueueUrl=QUEUE, Entries=[{"Id": str(i), "MessageBody": "m"} for i in range(4)])
        sqs.receive_message(QueueUrl=QUEUE)
        sqs.receive_message(QueueUrl=QUEUE)

    # Then each call is counted once, from this test (not Herald, not the poller), on its queue
    tally = counter.snapshot()
    send = CallKey(Origin.OTHER, "", "sqs", "SendMessageBatch", "herald-IntakeQueue-1A2B", "MainThread")
    receive = CallKey(Origin.OTHER, "", "sqs", "ReceiveMessage", "herald-IntakeQueue-1A2B", "MainThread")
    assert tally.calls == Counter({send: 1, receive: 2})
    assert tally.entries[send] == 4
    assert tally.received[receive] == 1
    assert tally.empty_receives[receive] == 1
    assert tally.count(service="sqs") == 3

    # And a reset starts from nothing
    counter.reset()
    assert counter.snapshot().count() == 0


def test_a_call_made_in_a_pool_thread_counts_for_whoever_submitted_the_work():
    # Given a counter hooked on a stubbed SQS client, and code that runs as a fan-out handler's would (compiled
    # under functions/fanout/app.py) handing a call to a thread pool
    from concurrent.futures import ThreadPoolExecutor

    from bench.calls import FUNCTIONS

    namespace: dict[str, object] = {}
    source = "def handler(pool, call, **kwargs):\n    return pool.submit(call, **kwargs).result()\n"
    exec(compile(source, FUNCTIONS + "fanout/app.py", "exec"), namespace)
    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    counter = CallCounter()
    counter.hook(sqs)
    with Stubber(sqs) as stub, ThreadPoolExecutor(max_workers=1) as pool:
        stub.add_response("receive_message", {})

        # When the handler's work makes the call in the pool's worker thread
        namespace["handler"](pool, sqs.receive_message, QueueUrl=QUEUE)  # type: ignore[operator]

    # Then it counts as the fan-out function's, though the worker's own stack holds no handler frame
    [key] = counter.snapshot().calls
    assert (key.origin, key.function) == (Origin.HERALD, "fanout")
