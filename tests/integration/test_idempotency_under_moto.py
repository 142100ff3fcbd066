"""POST /notifications with an Idempotency-Key, against the IdempotencyTable the template makes, under moto."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from herald.adapters.clients import client
from herald.adapters.idempotency import DynamoIdempotencyStore
from herald.logic.sending import fingerprint
from herald.models.api import NotificationRequest
from herald.models.idempotency import IdempotencyRecord, RecordState
from tests.integration.conftest import Deployed
from tests.integration.test_pipeline_under_moto import call_api

REQUEST = {"recipients": ["ada"], "title": "Your order shipped", "body": "Order 1042 is on its way."}
SCOPED = "a1b2c3d4e5#order-1042"  # the sample event's apiKeyId, then the key
INTAKE = "NormalIntakeQueue"  # the request's priority (the default) decides its lane


def send_with_key(deployed: Deployed, key: str, body: dict[str, Any] = REQUEST) -> dict[str, Any]:
    return call_api(deployed, "POST", "/notifications", body, headers={"Idempotency-Key": key})


def table(deployed: Deployed) -> str:
    return deployed.environment("ApiFunction")["IDEMPOTENCY_TABLE"]


def summaries(deployed: Deployed) -> list[str]:
    """The notification ids of the status table's summary items."""
    items = client("dynamodb").scan(TableName=deployed.environment("ApiFunction")["STATUS_TABLE"])["Items"]
    return sorted(item["notification_id"]["S"] for item in items if item["sk"]["S"] == "notification")


def put_record(deployed: Deployed, **fields: Any) -> None:
    """A record left in the table by an earlier attempt, written as DynamoIdempotencyStore writes it."""
    hash_of_request = fingerprint(NotificationRequest.model_validate(REQUEST))
    record = {
        "key": SCOPED,
        "request_hash": hash_of_request,
        "state": RecordState.IN_PROGRESS,
        "resource_id": "earlier-attempt",
        "expires_at": int(time.time()) + 86_400,
        "locked_until": int(time.time()) + 60,
    } | fields
    store = DynamoIdempotencyStore(client("dynamodb"), table(deployed))
    assert store.claim(IdempotencyRecord.model_validate(record), int(time.time())) is None


def test_a_repeat_answers_the_same_and_records_and_queues_one_notification(deployed: Deployed) -> None:
    # When a notification is sent twice with one key
    first = send_with_key(deployed, "order-1042")
    again = send_with_key(deployed, "order-1042")

    # Then both answers are the same 202, and one notification was recorded and queued
    assert (first["statusCode"], first["body"]) == (again["statusCode"], again["body"]) == (202, first["body"])
    notification_id = json.loads(first["body"])["notification_id"]
    assert [m["notification_id"] for m in deployed.bodies(INTAKE)] == [notification_id]
    assert summaries(deployed) == [notification_id]
    # ...and the key's record holds that answer, expiring in 24 hours
    [item] = client("dynamodb").scan(TableName=table(deployed))["Items"]
    assert (item["idempotency_key"]["S"], item["state"]["S"]) == (SCOPED, "completed")
    assert abs(int(item["expires_at"]["N"]) - (time.time() + 86_400)) < 60


def test_the_same_key_with_another_body_is_422_naming_the_header_and_creates_nothing(deployed: Deployed) -> None:
    # Given a key used once
    send_with_key(deployed, "order-1042")

    # When it comes with another title
    response = send_with_key(deployed, "order-1042", REQUEST | {"title": "Your order was cancelled"})

    # Then it is refused on the header, and still one notification exists
    assert response["statusCode"] == 422
    assert [e["field"] for e in json.loads(response["body"])["errors"]] == ["Idempotency-Key"]
    assert len(summaries(deployed)) == 1
    assert len(deployed.bodies(INTAKE)) == 1


def test_a_repeat_while_the_first_is_being_processed_is_409_with_retry_after(deployed: Deployed) -> None:
    # Given the first request's claim, its lease running for another minute
    put_record(deployed)

    # When the repeat arrives
    response = send_with_key(deployed, "order-1042")

    # Then it is told to come back, and nothing is recorded or queued
    assert response["statusCode"] == 409
    assert 50 <= int(response["multiValueHeaders"]["Retry-After"][0]) <= 60
    assert summaries(deployed) == []
    assert deployed.bodies(INTAKE) == []


def test_an_abandoned_claim_is_taken_over_under_the_notification_id_it_chose(deployed: Deployed) -> None:
    # Given a claim whose attempt crashed (its lease ran out a second ago) after choosing its notification id
    put_record(deployed, locked_until=int(time.time()) - 1)

    # When the caller repeats
    response = send_with_key(deployed, "order-1042")

    # Then the notification is accepted under that id, so a half-done first attempt is not doubled downstream
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["notification_id"] == "earlier-attempt"
    assert [m["notification_id"] for m in deployed.bodies(INTAKE)] == ["earlier-attempt"]


def test_an_attempt_taken_over_after_it_queued_its_message_keeps_its_accepted_time(deployed: Deployed) -> None:
    # Given a first attempt that recorded and queued its notification, then died before storing its answer
    first = send_with_key(deployed, "order-1042")
    notification_id = json.loads(first["body"])["notification_id"]
    accepted_at = status_item(deployed, notification_id)["accepted_at"]["S"]
    dynamodb = client("dynamodb")
    dynamodb.update_item(
        TableName=table(deployed),
        Key={"idempotency_key": {"S": SCOPED}},
        UpdateExpression="SET #state = :in_progress, locked_until = :past REMOVE status_code, response_body",
        ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={
            ":in_progress": {"S": RecordState.IN_PROGRESS.value},
            ":past": {"N": str(int(time.time()) - 1)},
        },
    )
    time.sleep(0.01)  # so that a new accepted time would differ

    # When the caller repeats, after the first attempt's lease ran out
    again = send_with_key(deployed, "order-1042")

    # Then the attempt is redone under the same id and with the first accepted time, in the record and in the
    # message it queues again: its deliveries (an inbox item, a history entry) are keyed as the first ones were
    assert again["statusCode"] == 202 and json.loads(again["body"])["notification_id"] == notification_id
    assert status_item(deployed, notification_id)["accepted_at"]["S"] == accepted_at
    queued = deployed.bodies(INTAKE)
    assert [m["notification_id"] for m in queued] == [notification_id, notification_id]
    assert len({m["accepted_at"] for m in queued}) == 1
    assert datetime.fromisoformat(queued[1]["accepted_at"]) == datetime.fromisoformat(accepted_at)


def status_item(deployed: Deployed, notification_id: str) -> dict[str, Any]:
    item: dict[str, Any] = client("dynamodb").get_item(
        TableName=deployed.environment("ApiFunction")["STATUS_TABLE"],
        Key={"notification_id": {"S": notification_id}, "sk": {"S": "notification"}},
    )["Item"]
    return item


def test_an_expired_record_that_ttl_has_not_removed_yet_frees_its_key(deployed: Deployed) -> None:
    # Given a record whose 24 hours ended a second ago (DynamoDB's TTL deletes lazily)
    put_record(deployed, expires_at=int(time.time()) - 1, locked_until=int(time.time()) - 86_400)

    # When the key is used again, even for another request
    response = send_with_key(deployed, "order-1042", REQUEST | {"title": "A new request"})

    # Then it is a new notification
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["notification_id"] != "earlier-attempt"


class WithoutReturnValuesOnConditionCheckFailure:
    """A DynamoDB client as some emulators behave: the failed condition's item is not returned."""

    def __init__(self, dynamodb: Any):
        self._dynamodb = dynamodb

    def put_item(self, **request: Any) -> Any:
        request.pop("ReturnValuesOnConditionCheckFailure", None)
        return self._dynamodb.put_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dynamodb, name)


def test_the_existing_record_is_read_back_where_the_failed_condition_does_not_return_it(deployed: Deployed) -> None:
    # Given a completed record, and a store whose endpoint leaves the item out of a failed condition
    first = send_with_key(deployed, "order-1042")
    store = DynamoIdempotencyStore(WithoutReturnValuesOnConditionCheckFailure(client("dynamodb")), table(deployed))
    record = IdempotencyRecord(
        key=SCOPED,
        request_hash="any",
        state=RecordState.IN_PROGRESS,
        resource_id="other",
        expires_at=int(time.time()) + 60,
        locked_until=int(time.time()) + 10,
    )

    # When a claim on the same key fails
    existing = store.claim(record, int(time.time()))

    # Then the store read the record back, answer included
    assert existing is not None and existing.response is not None
    assert existing.response.body == first["body"]
