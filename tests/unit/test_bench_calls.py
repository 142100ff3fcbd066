"""The call counter: botocore hooks count calls by who made them, service, operation and resource."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

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


class FakeImages:
    """Item sizes as the endpoint would give them, keyed by (table, key)."""

    def __init__(self, sizes: dict[tuple[str, str], list[int]]):
        self.sizes = sizes  # each read pops the next size: before, then after

    def key_of(self, table: str, item: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return {"pk": item["pk"]}

    def size(self, table: str, key: dict[str, dict[str, str]]) -> int:
        return self.sizes[(table, key["pk"]["S"])].pop(0)


def test_each_call_is_metered_in_the_units_it_bills_as():
    # Given a counter with item images, hooked on DynamoDB and SQS clients whose answers are stubbed
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    images = FakeImages({("T", "grows"): [300, 2100], ("T", "new"): [0]})
    counter = CallCounter(images)  # type: ignore[arg-type]
    counter.hook(dynamodb, sqs)
    big_item = {"pk": {"S": "x" * 1500}}
    with Stubber(dynamodb) as db, Stubber(sqs) as queue:
        db.add_response("update_item", {})
        db.add_response("put_item", {})
        db.add_response("query", {"Items": [big_item, big_item, big_item]})
        queue.add_response("send_message", {"MessageId": "1", "MD5OfMessageBody": "m"})

        # When an update grows an item from 300 bytes to 2,100, a new 1.5 KB item is put, a query
        # returns three 1.5 KB items, and a 70 KB message is sent
        dynamodb.update_item(TableName="T", Key={"pk": {"S": "grows"}}, UpdateExpression="SET a = :a")
        dynamodb.put_item(TableName="T", Item={"pk": {"S": "new"}, "a": {"S": "x" * 1500}})
        dynamodb.query(TableName="T", KeyConditionExpression="pk = :p")
        sqs.send_message(QueueUrl=QUEUE, MessageBody="x" * 70_000)

    # Then the update bills 3 write units (the larger image, 2,100 bytes), the put 2 (1,506 bytes),
    # the query 1 read unit (4,506 bytes, eventually consistent), the send 2 requests (two 64 KB chunks)
    units = {key.operation: n for key, n in counter.snapshot().units.items()}
    assert units == {"UpdateItem": 3, "PutItem": 2, "Query": 1.0, "SendMessage": 2}


def test_without_item_images_writes_are_counted_but_not_metered():
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    counter = CallCounter()
    counter.hook(dynamodb)
    with Stubber(dynamodb) as db:
        db.add_response("put_item", {})
        dynamodb.put_item(TableName="T", Item={"pk": {"S": "a"}})
    tally = counter.snapshot()
    assert tally.count(operation="PutItem") == 1
    assert sum(tally.units.values()) == 0


def test_a_call_under_way_at_a_reset_is_not_finished_into_the_new_tally():
    # Given a receive whose request went out (the hooks botocore calls, called as it would)
    counter = CallCounter()
    model = SimpleNamespace(name="ReceiveMessage", service_model=SimpleNamespace(endpoint_prefix="sqs"))
    context: dict[str, object] = {}
    counter._before(params={"QueueUrl": QUEUE}, model=model, context=context)

    # When the tally is reset before its (empty) answer comes back
    counter.reset()
    counter._after(parsed={}, context=context, http_response=SimpleNamespace(status_code=200))

    # Then the new tally has neither the call nor its empty answer (no negative count of receives)
    tally = counter.snapshot()
    assert tally.count() == 0
    assert sum(tally.empty_receives.values()) == 0


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
