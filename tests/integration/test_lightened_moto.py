"""moto with the emulator process's patches (herald_local.emulator.lighten_moto) answers as moto does without them.

Each side runs the same DynamoDB requests in a fresh interpreter (the patches are process-wide, so
this test process stays unpatched): the answers, items and errors must be the same, request by
request. The requests reuse expression texts with other values and other attribute names, which is
what the kept parses, tokens and shape checks must not confuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TABLE = "lightened"


def scenario() -> list[Any]:
    """The requests, each answered by its item afterwards or by its error's code and message."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    outcomes: list[Any] = []
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )

        def update(key: str, expression: str, values: dict[str, Any], **more: Any) -> None:
            try:
                answer = dynamodb.update_item(
                    TableName=TABLE,
                    Key={"pk": {"S": key}, "sk": {"S": "s"}},
                    UpdateExpression=expression,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                    **more,
                )
                outcomes.append({"item": answer.get("Attributes")})
            except ClientError as error:
                outcomes.append(
                    {"error": error.response["Error"]["Code"], "message": error.response["Error"]["Message"]}
                )
            except ValueError as error:  # moto raises a condition it cannot lex (its server answers 500)
                outcomes.append({"error": type(error).__name__, "message": str(error)})

        claim = "SET claim_owner = :o, claimed_until = :u"
        free = "attribute_not_exists(claim_owner) OR claimed_until < :now"
        # A claim taken, then the same texts with other values: refused, then taken once it has expired
        update("a", claim, {":o": {"S": "first"}, ":u": {"N": "100"}, ":now": {"N": "50"}}, ConditionExpression=free)
        update("a", claim, {":o": {"S": "second"}, ":u": {"N": "200"}, ":now": {"N": "60"}}, ConditionExpression=free)
        update("a", claim, {":o": {"S": "third"}, ":u": {"N": "300"}, ":now": {"N": "150"}}, ConditionExpression=free)
        # One expression text, the value changing each time: each write holds its own value
        for count in ("1", "2", "3"):
            update(
                "b",
                "SET #v = :v ADD hits :one",
                {":v": {"N": count}, ":one": {"N": "1"}},
                ExpressionAttributeNames={"#v": "v"},
            )
        # The same text whose name now points at the table's key: refused, though the shape passed before
        update(
            "b",
            "SET #v = :v ADD hits :one",
            {":v": {"S": "x"}, ":one": {"N": "1"}},
            ExpressionAttributeNames={"#v": "sk"},
        )
        # A condition's text with another name behind its placeholder: read from that attribute
        owned = "#who = :me"
        release = "SET released = :t REMOVE claim_owner"
        update(
            "a",
            release,
            {":t": {"S": "now"}, ":me": {"S": "third"}},
            ConditionExpression=owned,
            ExpressionAttributeNames={"#who": "claim_owner"},
        )
        update(
            "a",
            release,
            {":t": {"S": "again"}, ":me": {"S": "third"}},
            ConditionExpression=owned,
            ExpressionAttributeNames={"#who": "claimed_until"},
        )
        # Faulty shapes fail every time they are sent, never remembered as passed
        for _ in range(2):
            update("c", "SET a = :x, a = :y", {":x": {"N": "1"}, ":y": {"N": "2"}})
            update("c", "SET a = :x SET b = :y", {":x": {"N": "1"}, ":y": {"N": "2"}})
            update("c", "SET a = :x", {":x": {"N": "1"}}, ConditionExpression="a === :x")
            update("c", "SET a = :missing", {":x": {"N": "1"}})
        # Functions, whose arguments are copied from the item (list_append, if_not_exists)
        for item in ("d", "d"):
            update(
                item,
                "SET tags = list_append(if_not_exists(tags, :empty), :tag), seen = if_not_exists(seen, :t)",
                {":empty": {"L": []}, ":tag": {"L": [{"S": item}]}, ":t": {"S": "first"}},
            )
        outcomes.append(dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"])
        outcomes.extend(queue_scenario())
    return outcomes


def queue_scenario() -> list[Any]:
    """SQS and SNS sends (inside scenario()'s mock): what each queue holds and says of itself afterwards, and each
    refused send's error. Message ids and times differ by run; bodies, counts and errors may not."""
    import boto3
    from botocore.exceptions import ClientError

    sqs, sns = boto3.client("sqs", region_name="us-east-1"), boto3.client("sns", region_name="us-east-1")
    outcomes: list[Any] = []

    def send(**request: Any) -> None:
        try:
            sqs.send_message(**request)
            outcomes.append("sent")
        except ClientError as error:
            outcomes.append({"error": error.response["Error"]["Code"], "message": error.response["Error"]["Message"]})

    standard = sqs.create_queue(QueueName="standard")["QueueUrl"]
    deduplicated = sqs.create_queue(
        QueueName="deduplicated.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    explicit = sqs.create_queue(QueueName="explicit.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    # A standard queue keeps every copy; a FIFO queue deduplicates by content only when told to
    for _ in range(2):
        send(QueueUrl=standard, MessageBody="same")
        send(QueueUrl=deduplicated, MessageBody="same", MessageGroupId="g")
    send(QueueUrl=explicit, MessageBody="no deduplication id", MessageGroupId="g")
    send(QueueUrl=explicit, MessageBody="no group")
    send(QueueUrl=explicit, MessageBody="with an id", MessageGroupId="g", MessageDeduplicationId="d")
    send(QueueUrl="https://sqs.us-east-1.amazonaws.com/123456789012/nowhere", MessageBody="lost")
    # An SNS topic's publishes delivered to a queue, as the fan-out's are
    arn = sqs.get_queue_attributes(QueueUrl=standard, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="deliveries")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    sns.publish_batch(
        TopicArn=topic, PublishBatchRequestEntries=[{"Id": str(n), "Message": f"published {n}"} for n in range(3)]
    )
    for url in (standard, deduplicated, explicit):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        outcomes.append(
            {
                "counts": {name: value for name, value in attributes.items() if name.startswith("Approximate")},
                "deduplication": attributes.get("ContentBasedDeduplication"),
                "bodies": sorted(message["Body"] for message in received.get("Messages", [])),
            }
        )
    return outcomes


@cache
def answers(lightened: bool) -> dict[str, Any]:
    code = (
        "import json, sys\n"
        + (
            "from herald_local.emulator import lighten_moto\napplied = lighten_moto()\n"
            if lightened
            else "applied = []\n"
        )
        + "from tests.integration.test_lightened_moto import scenario\n"
        + "print(json.dumps({'applied': applied, 'outcomes': scenario()}, sort_keys=True))\n"
    )
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "functions"), str(ROOT)]))
    for name in [name for name in environment if name.startswith("AWS_ENDPOINT_URL")]:
        del environment[name]
    environment.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_every_patch_applies_to_the_installed_moto() -> None:
    # Given a fresh interpreter with the installed moto
    # When the emulator process's patches are applied
    applied = answers(lightened=True)["applied"]

    # Then each one found what it patches (a moto upgrade that moved something shows here)
    assert applied == [
        "moto's module list kept",
        "handler methods kept per class",
        "update expressions parsed once",
        "parsed trees copied from their pickle",
        "condition expressions lexed once",
        "an expression's shape checked once",
        "tree passes know which nodes they process",
        "retention read from the queue",
        "a send reads the queue's deduplication setting alone",
    ]


def test_patched_moto_answers_every_request_as_moto_does() -> None:
    # Given the same requests sent to moto as it comes and to moto patched
    # When both answer
    plain, lightened = answers(lightened=False)["outcomes"], answers(lightened=True)["outcomes"]

    # Then every answer, item and error is the same
    assert len(plain) == len(lightened)
    for index, (expected, got) in enumerate(zip(plain, lightened, strict=True)):
        assert got == expected, f"request {index}"


def test_one_expression_text_with_other_values_gives_each_request_its_own_outcome() -> None:
    # Given moto patched, and the requests that reuse one expression text with other values and names
    outcomes = answers(lightened=True)["outcomes"]
    claims, counts, key_write, releases = outcomes[0:3], outcomes[3:6], outcomes[6], outcomes[7:9]

    # Then the claim is taken, refused while held, and taken again once it has expired
    assert claims[0]["item"]["claim_owner"] == {"S": "first"}
    assert claims[1]["error"] == "ConditionalCheckFailedException"
    assert claims[2]["item"]["claim_owner"] == {"S": "third"}
    # and each write of one text holds its own value
    assert [c["item"]["v"] for c in counts] == [{"N": "1"}, {"N": "2"}, {"N": "3"}]
    assert counts[2]["item"]["hits"] == {"N": "3"}
    # and the text whose name now points at the key is refused, though its shape passed with another name
    assert key_write["error"] == "ValidationException"
    # and a condition reads the attribute its placeholder names in that request
    assert releases[0]["item"]["released"] == {"S": "now"}
    assert releases[1]["error"] == "ConditionalCheckFailedException"


def test_patched_moto_sends_keep_every_queue_rule() -> None:
    # Given moto patched, and the sends of the queue scenario (the last outcomes)
    outcomes = answers(lightened=True)["outcomes"][-11:]
    sends, (standard, deduplicated, explicit) = outcomes[:8], outcomes[8:]

    # Then the sends a FIFO queue's rules refuse, and the one to no queue, were refused
    assert [send if send == "sent" else send["error"] for send in sends] == [
        *["sent"] * 4,
        "InvalidParameterValue",  # no deduplication id, and none by content
        "MissingParameter",  # no message group
        "sent",
        "AWS.SimpleQueueService.NonExistentQueue",
    ]
    # and each queue holds what its rules keep: every copy, one copy by content, the one sent with its id
    assert standard["bodies"] == ["published 0", "published 1", "published 2", "same", "same"]
    assert standard["counts"]["ApproximateNumberOfMessages"] == "5"
    assert (deduplicated["bodies"], deduplicated["deduplication"]) == (["same"], "true")
    assert (explicit["bodies"], explicit["deduplication"]) == (["with an id"], "false")


def test_a_faulty_expression_fails_each_time_it_is_sent() -> None:
    # Given moto patched, and four faulty requests sent twice each
    faulty = answers(lightened=True)["outcomes"][9:17]

    # Then all eight fail, the second sending of each as the first
    assert all("error" in outcome for outcome in faulty)
    assert faulty[:4] == faulty[4:]
    assert "Two document paths overlap" in faulty[0]["message"]
