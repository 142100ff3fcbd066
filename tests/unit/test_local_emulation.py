"""The local stack's emulation rules, one at a time: routing, API keys, throttling, batch results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from herald_local.api_gateway import ApiGateway, TokenBucket, compile_path
from herald_local.event_source import QueuePoller
from herald_local.template import EventSourceSpec, RouteSpec


class RecordingFunction:
    name = "ApiFunction"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 201, "headers": {"X-Seen": "yes"}, "body": json.dumps({"ok": True})}


def gateway(function: RecordingFunction, rate: float | None = None, burst: int | None = None) -> ApiGateway:
    route = RouteSpec("PUT", "/users/{user_id}/devices/{device_id}", "ApiFunction", api_key_required=True)
    return ApiGateway([(route, function)], api_key="k", stage="dev", rate_limit=rate, burst_limit=burst)  # type: ignore[list-item]


def test_a_route_template_matches_its_parameters() -> None:
    pattern = compile_path("/users/{user_id}/devices/{device_id}")
    match = pattern.match("/users/u-1/devices/d.2")
    assert match is not None and match.groupdict() == {"user_id": "u-1", "device_id": "d.2"}
    assert pattern.match("/users/u-1/devices") is None
    assert compile_path("/files/{proxy+}").match("/files/a/b/c") is not None


def test_the_gateway_hands_the_function_a_rest_proxy_event() -> None:
    # Given a gateway with one route
    function = RecordingFunction()
    api = gateway(function)

    # When a request with the key arrives, under the stage prefix too
    status, headers, body = api.handle(
        "PUT", "/dev/users/ada/devices/web?x=1&x=2", [("x-api-key", "k")], b'{"channel":"in_app"}', "127.0.0.1"
    )

    # Then the function got a proxy event, and its response came back as HTTP
    assert (status, json.loads(body), ("X-Seen", "yes") in headers) == (201, {"ok": True}, True)
    [event] = function.events
    assert event["resource"] == "/users/{user_id}/devices/{device_id}"
    assert event["path"] == "/users/ada/devices/web"
    assert event["pathParameters"] == {"user_id": "ada", "device_id": "web"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["requestContext"]["stage"] == "dev"
    assert event["body"] == '{"channel":"in_app"}' and event["isBase64Encoded"] is False
    api._server.server_close()


def test_the_function_runs_inside_what_the_gateway_is_told_of_each_arrival() -> None:
    # Given a gateway told of each request let in, answering a context the function's run is watched from
    seen: list[str] = []

    @contextmanager
    def arriving(method: str, path: str, body: bytes) -> Iterator[None]:
        seen.append(f"arrived {method} {path} {body.decode()}")
        yield
        seen.append("left")

    function = RecordingFunction()
    route = RouteSpec("PUT", "/users/{user_id}/devices/{device_id}", "ApiFunction", api_key_required=True)
    api = ApiGateway([(route, function)], api_key="k", stage="dev", arriving=arriving)  # type: ignore[list-item]
    invoke = function.invoke
    function.invoke = lambda event: (seen.append("invoked"), invoke(event))[1]  # type: ignore[method-assign]

    # When a request with the key arrives, and one without
    assert api.handle("PUT", "/users/ada/devices/web", [("x-api-key", "k")], b"{}", "127.0.0.1")[0] == 201
    assert api.handle("PUT", "/users/ada/devices/web", [], b"{}", "127.0.0.1")[0] == 403

    # Then the function ran inside the context of the one let in; the refused one was never told of
    assert seen == ["arrived PUT /users/ada/devices/web {}", "invoked", "left"]
    api._server.server_close()


def test_the_gateway_refuses_before_the_function_runs() -> None:
    function = RecordingFunction()
    api = gateway(function)
    assert api.handle("PUT", "/users/a/devices/b", [], b"", "127.0.0.1")[0] == 403  # no key
    assert api.handle("PUT", "/users/a/devices/b", [("X-Api-Key", "bad")], b"", "127.0.0.1")[0] == 403
    assert api.handle("GET", "/users/a/devices/b", [("x-api-key", "k")], b"", "127.0.0.1")[0] == 403  # no such route
    assert function.events == []
    assert api._server.server_address[0] == "127.0.0.1"
    api._server.server_close()


def test_the_usage_plan_throttles_past_its_burst() -> None:
    function = RecordingFunction()
    api = gateway(function, rate=0.001, burst=2)
    codes = [api.handle("PUT", "/users/a/devices/b", [("x-api-key", "k")], b"", "127.0.0.1")[0] for _ in range(3)]
    assert codes == [201, 201, 429]
    api._server.server_close()


def test_a_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=1000, burst=1)
    assert bucket.take()
    bucket._at -= 0.01  # ten milliseconds later
    assert bucket.take()


def _poller(report: bool) -> QueuePoller:
    spec = EventSourceSpec("M", "F", "Q", 10, 0, report, None)
    return QueuePoller(None, spec, "url", "arn:aws:sqs:us-east-1:1:q", None, 1)  # type: ignore[arg-type]


MESSAGES = [{"MessageId": "a"}, {"MessageId": "b"}]


def test_only_reported_failures_return_to_the_queue() -> None:
    assert _poller(True)._failed_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, MESSAGES) == {"b"}
    assert _poller(True)._failed_ids({"batchItemFailures": []}, MESSAGES) == set()


def test_a_malformed_failure_report_fails_the_whole_batch_as_lambda_does() -> None:
    assert _poller(True)._failed_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, MESSAGES) == {"a", "b"}
    assert _poller(True)._failed_ids({"batchItemFailures": [{"itemIdentifier": "zz"}]}, MESSAGES) == {"a", "b"}


def test_without_report_batch_item_failures_the_response_is_ignored() -> None:
    assert _poller(False)._failed_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, MESSAGES) == set()


class TricklingQueue:
    """An SQS client whose queue gets one message per receive: arrivals slower than the batch fills."""

    def __init__(self, available: int) -> None:
        self.available = available
        self.receives = 0

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.receives += 1
        if self.available <= 0:
            return {}
        self.available -= 1
        return {"Messages": [{"MessageId": f"m{self.receives}"}]}


def _windowed(sqs: TricklingQueue, window: int, batch_size: int = 10) -> QueuePoller:
    spec = EventSourceSpec("M", "F", "Q", batch_size, window, True, None)
    return QueuePoller(sqs, spec, "url", "arn:aws:sqs:us-east-1:1:q", None, 1)  # type: ignore[arg-type]


def test_without_a_batching_window_the_first_receive_is_the_batch() -> None:
    # Given a queue that trickles in messages, and a mapping with no window
    sqs = TricklingQueue(available=5)

    # When the mapping collects a batch
    batch = _windowed(sqs, window=0)._collect()

    # Then it hands on what the first receive returned, as Lambda does without a window
    assert [m["MessageId"] for m in batch] == ["m1"]
    assert sqs.receives == 1


def test_a_batching_window_gathers_until_the_batch_is_full() -> None:
    # Given a queue that trickles in 12 messages, and a mapping of batch size 4 with a 1 s window
    sqs = TricklingQueue(available=12)

    # When the mapping collects a batch
    batch = _windowed(sqs, window=1, batch_size=4)._collect()

    # Then it keeps receiving until the batch is full, and no further
    assert len(batch) == 4
    assert sqs.receives == 4


def test_a_batching_window_hands_on_a_partial_batch_when_it_ends() -> None:
    # Given a queue holding 2 messages, and a mapping of batch size 10 with a 1 s window
    sqs = TricklingQueue(available=2)

    # When the mapping collects a batch
    batch = _windowed(sqs, window=1)._collect()

    # Then after the window it hands on what it has rather than waiting for a full batch
    assert [m["MessageId"] for m in batch] == ["m1", "m2"]
    assert sqs.receives > 2
