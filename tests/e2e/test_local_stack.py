"""Herald end to end on the local stack: HTTP in, providers out."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from herald.adapters.clients import client
from herald.adapters.dead_letters import NO_REASON
from tests.e2e.conftest import API_KEY, Herald, eventually

pytestmark = pytest.mark.e2e


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_one_notification_reaches_all_four_channels(herald: Herald) -> None:
    # Given a user who registered an email, an sms, a push and an in-app device
    user = unique("ada")
    email, phone, token = f"{user}@example.com", "+14155550123", unique("apns-token")
    code = str(uuid.uuid4().int % 1_000_000).zfill(6)  # an emulator that outlives one run keeps older SMS
    assert herald.put_device(user, "mail", {"channel": "email", "address": email}).status_code == 200
    assert herald.put_device(user, "phone", {"channel": "sms", "address": phone}).status_code == 200
    assert herald.put_device(user, "ios", {"channel": "push", "address": token, "platform": "apns"}).status_code == 200
    assert herald.put_device(user, "web", {"channel": "in_app"}).status_code == 200

    # When a backend sends one notification over HTTP
    notification_id = herald.send({"recipients": [user], "title": "Sign-in code", "body": code, "priority": "high"})

    # Then all four deliveries are recorded sent...
    status = herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered")
    assert sorted((d["channel"], d["status"], d["attempts"]) for d in status["deliveries"]) == [
        ("email", "sent", 1),
        ("in_app", "sent", 1),
        ("push", "sent", 1),
        ("sms", "sent", 1),
    ]
    # ...and each provider holds what it received
    [mail] = [m for m in herald.providers.emails() if m.to == (email,)]
    assert (mail.subject, mail.body) == ("Sign-in code", code)
    [sms] = [m for m in herald.providers.sms() if m.phone_number == phone and code in m.message]
    assert sms.message == f"Sign-in code: {code}"
    [push] = [p for p in herald.providers.pushes() if p.token == token]
    assert json.loads(push.message["APNS"])["aps"]["alert"] == {"title": "Sign-in code", "body": code}
    inbox = herald.http.get(f"{herald.url}/users/{user}/inbox", timeout=10).json()
    assert [(i["notification_id"], i["body"]) for i in inbox["items"]] == [(notification_id, code)]


def test_each_priority_reaches_only_its_own_deliver_function(herald: Herald) -> None:
    # Given a user with an in-app device
    user = unique("grace")
    herald.put_device(user, "web", {"channel": "in_app"})

    # When one notification of each priority is sent
    sent = {
        p: herald.send({"recipients": [user], "title": p, "body": p, "priority": p}) for p in ("low", "normal", "high")
    }

    # Then each is delivered, by its own priority's function and no other
    for notification_id in sent.values():
        herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered")
    functions = herald.stack.functions

    def handled_by(notification_id: str) -> dict[str, int]:
        # The journal gets an invocation when its handler returns, just after the status is written
        names = ("DeliverHighFunction", "DeliverNormalFunction", "DeliverLowFunction")
        return {
            name: sum(notification_id in body for i in list(functions[name].invocations) for body in i.bodies)
            for name in names
        }

    for priority, notification_id in sent.items():
        own = f"Deliver{priority.capitalize()}Function"
        counts = eventually(lambda n=notification_id: handled_by(n), lambda c, own=own: c[own] == 1, timeout=5)
        assert {name: count for name, count in counts.items() if count} == {own: 1}, priority


def test_a_delivery_that_fails_twice_is_sent_on_its_third_attempt(herald: Herald) -> None:
    # Given an email address whose provider fails twice, then recovers
    user = unique("flaky")
    address = f"{user}@example.com"
    herald.outage.failures_left[address] = 2
    herald.put_device(user, "mail", {"channel": "email", "address": address})

    # When a notification is sent to it
    notification_id = herald.send({"recipients": [user], "title": "Receipt", "body": "Thanks", "priority": "high"})

    # Then it ends sent, with three attempts, no error left over from the failed ones, and the provider holds
    # exactly one copy
    status = herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered", timeout=30)
    [delivery] = status["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["last_error"]) == ("sent", 3, None)
    assert delivery["queued_at"] is not None and delivery["queued_at"] <= delivery["sent_at"]
    assert herald.outage.calls[address] == 3
    assert len([m for m in herald.providers.emails() if m.to == (address,)]) == 1


def test_a_delivery_that_always_fails_is_dead_lettered_then_redriven(herald: Herald) -> None:
    # Given an email address whose provider keeps failing
    user = unique("down")
    address = f"{user}@example.com"
    herald.outage.failures_left[address] = 10_000
    herald.put_device(user, "mail", {"channel": "email", "address": address})

    # When a notification is sent to it
    notification_id = herald.send({"recipients": [user], "title": "Report", "body": "Weekly", "priority": "high"})

    # Then its last allowed attempt records it dead-lettered (and the notification says so, not "failed": a
    # redrive may still deliver it), and the message reaches the high DLQ
    status = herald.wait_for_status(notification_id, lambda s: s["status"] == "dead_lettered", timeout=40)
    [delivery] = status["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("dead_lettered", 5)
    # (GET /queues reads the queue, then its DLQ: wait until both show the move done)
    eventually(
        lambda: herald.http.get(f"{herald.url}/queues", timeout=10).json()["high"],
        lambda high: high["dead_lettered"] == 1 and high["visible"] + high["in_flight"] == 0,
    )

    # When the operator first looks with a dry run
    redrive = herald.stack.functions["DlqRedriveFunction"]
    dry = redrive.invoke({"priority": "high", "dry_run": True})["queues"]["high"]

    # Then it sees the one message and why it is there (Herald's reason, or the redrive policy's), and leaves it
    assert (dry["waiting"], dry["moved"], len(dry["reasons"])) == (1, 0, 1)
    assert dry["reasons"][0] == NO_REASON or "provider unavailable" in dry["reasons"][0], dry

    # When the provider recovers and the operator redrives the high DLQ
    herald.outage.failures_left[address] = 0
    result = redrive.invoke({"priority": "high"})

    # Then one message moved, by SQS's own move task where the emulator has it (LocalStack, as AWS), else by
    # receive, send, delete (moto); and the delivery is sent
    high = result["queues"]["high"]
    expected = "message_move_task" if herald.sqs_emulator == "localstack" else "receive_send_delete"
    assert (high["path"], high["moved"], result["total_moved"]) == (expected, 1, 1), high
    if expected == "message_move_task":
        assert high["task_status"] == "COMPLETED"
    status = herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered", timeout=20)
    assert status["deliveries"][0]["attempts"] == 6
    assert len([m for m in herald.providers.emails() if m.to == (address,)]) == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "field"),
    [
        (
            "POST",
            "/notifications",
            {"recipients": ["u"], "title": "t", "body": "b", "priority": "urgent"},
            {},
            422,
            "priority",
        ),
        ("POST", "/notifications", {"recipients": [], "title": "t", "body": "b"}, {}, 422, "recipients"),
        ("POST", "/notifications", {"recipients": ["u"], "body": "b"}, {}, 422, "title"),
        ("PUT", "/users/u/devices/d", {"channel": "sms", "address": "0800"}, {}, 422, "address"),
        ("PUT", "/users/u/devices/d", {"channel": "push", "address": "tok"}, {}, 422, "platform"),
        ("PUT", "/users/u/devices/d", {"channel": "fax"}, {}, 422, "channel"),
        ("POST", "/notifications", "{not json", {"content-type": "application/json"}, 400, "body"),
        ("GET", "/users/u/inbox?limit=1000", None, {}, 422, "limit"),
        ("GET", "/users/u/inbox?page=2", None, {}, 422, "page"),
        ("POST", "/notifications", "x" * 200_000, {"content-type": "application/json"}, 413, "body"),
        (
            "PUT",
            "/users/u/devices/d",
            "channel=in_app",
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "content-type",
        ),
        (
            "POST",
            "/notifications",
            {"recipients": ["u"], "title": "t", "body": "b"},
            {"Idempotency-Key": "a b"},
            422,
            "Idempotency-Key",
        ),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(
    herald: Herald, method: str, path: str, body: object, headers: dict[str, str], status: int, field: str
) -> None:
    # When a caller sends something wrong
    data = body if isinstance(body, str) else None
    response = herald.http.request(
        method, herald.url + path, json=None if data else body, data=data, headers=headers, timeout=10
    )

    # Then the answer is that 4xx, with a JSON body naming the field
    assert response.status_code == status, response.text
    assert field in [error["field"] for error in response.json()["errors"]], response.text


def test_the_api_key_is_required_on_every_route(herald: Herald) -> None:
    # When a caller omits or forges the key, or asks for an unknown route or method
    missing = herald.http.get(f"{herald.url}/queues", headers={"x-api-key": ""}, timeout=10)
    wrong = herald.http.get(f"{herald.url}/openapi.json", headers={"x-api-key": "nope"}, timeout=10)
    unknown = herald.http.get(f"{herald.url}/nowhere", timeout=10)

    undeclared = herald.http.request("TRACE", f"{herald.url}/queues", timeout=10)

    # Then API Gateway answers 403 before any function runs
    assert (missing.status_code, wrong.status_code, unknown.status_code, undeclared.status_code) == (403,) * 4
    openapi = herald.http.get(f"{herald.url}/openapi.json", timeout=10).json()
    assert "/notifications" in openapi["paths"]


def test_unregistered_devices_get_nothing(herald: Herald) -> None:
    # Given a user who logged out of their only device
    user = unique("gone")
    herald.put_device(user, "web", {"channel": "in_app"})
    assert herald.http.delete(f"{herald.url}/users/{user}/devices/web", timeout=10).status_code == 204
    assert herald.http.delete(f"{herald.url}/users/{user}/devices/web", timeout=10).status_code == 404

    # When a notification is sent to them
    notification_id = herald.send({"recipients": [user], "title": "t", "body": "b"})

    # Then it is recorded as having no devices
    status = herald.wait_for_status(notification_id, lambda s: s["status"] == "no_devices")
    assert status["recipients_without_devices"] == [user]
    assert herald.http.get(f"{herald.url}/users/{user}/devices", timeout=10).json() == {"devices": []}


def test_nothing_listens_beyond_this_machine(herald: Herald) -> None:
    # Given the running stack, Then its API and every AWS endpoint it uses are bound to the loopback address only
    assert herald.stack.gateway is not None
    assert herald.stack.gateway._server.server_address[0] == "127.0.0.1"
    endpoints = {url or "" for url in herald.stack.endpoints.values()}
    assert all(url.startswith("http://127.0.0.1:") for url in [herald.url, *endpoints]), endpoints
    listening = _listening_addresses()
    for url in (herald.url, *endpoints):
        port = int(url.rsplit(":", 1)[1])
        assert listening.get(port) == {"127.0.0.1"}, (port, listening.get(port))


def _listening_addresses() -> dict[int, set[str]]:
    """Port -> local addresses in LISTEN state, from /proc/net/tcp (IPv4) and tcp6."""
    import ipaddress
    from pathlib import Path

    found: dict[int, set[str]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            address_hex, port_hex = local.split(":")
            raw = bytes.fromhex(address_hex)
            # /proc stores each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = str(ipaddress.ip_address(words)) if width == 8 else str(ipaddress.IPv6Address(words))
            found.setdefault(int(port_hex, 16), set()).add(address)
    return found


def test_an_idempotency_key_repeat_gets_the_first_answer_and_one_delivery(herald: Herald) -> None:
    # Given a user with an email device, and the API function's idempotency table made from the template
    user = unique("repeat")
    address = f"{user}@example.com"
    herald.put_device(user, "mail", {"channel": "email", "address": address})
    table = herald.stack.functions["ApiFunction"].environment["IDEMPOTENCY_TABLE"]
    assert client("dynamodb").describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"
    request = {"recipients": [user], "title": "Receipt", "body": "Thanks", "priority": "high"}
    key = {"Idempotency-Key": unique("receipt")}

    # When the backend sends it, then repeats it (its first call timed out, say), then reuses the key wrongly
    first = herald.http.post(f"{herald.url}/notifications", json=request, headers=key, timeout=10)
    again = herald.http.post(f"{herald.url}/notifications", json=request, headers=key, timeout=10)
    other = herald.http.post(f"{herald.url}/notifications", json=request | {"body": "Other"}, headers=key, timeout=10)

    # Then the repeat got the first answer, the misuse a 422 naming the header...
    assert (first.status_code, again.status_code, again.json()) == (202, 202, first.json())
    assert other.status_code == 422
    assert [e["field"] for e in other.json()["errors"]] == ["Idempotency-Key"]
    # ...and once the intake and high queues are drained (a second notification would have gone through them),
    # the provider holds exactly one email
    herald.wait_for_status(first.json()["notification_id"], lambda s: s["status"] == "delivered")
    eventually(
        lambda: herald.http.get(f"{herald.url}/queues", timeout=10).json(),
        lambda q: all(depth["visible"] + depth["in_flight"] == 0 for depth in (q["intake"]["high"], q["high"])),
    )
    assert len([m for m in herald.providers.emails() if m.to == (address,)]) == 1


def test_concurrent_requests_are_served_at_once_each_in_a_container_of_its_own(herald: Herald) -> None:
    # Given six users with a device each, and the API's device reads held until six requests are inside at once
    users = [unique("concurrent") for _ in range(6)]
    for user in users:
        assert herald.put_device(user, "web", {"channel": "in_app"}).status_code == 200
    api = herald.stack.functions["ApiFunction"]
    since = time.time()

    def list_devices(user: str) -> requests.Response:
        # A connection per caller, as separate clients would have
        return requests.get(f"{herald.url}/users/{user}/devices", headers={"x-api-key": API_KEY}, timeout=30)

    # When the six ask for their devices together
    with herald.gate.armed(len(users)), ThreadPoolExecutor(max_workers=len(users)) as callers:
        responses = list(callers.map(list_devices, users))

    # Then each was answered with its own devices: none waited for another to finish (the gate would
    # have given up after 10 s, a 502), so six were handled at once...
    assert [r.status_code for r in responses] == [200] * len(users), [r.text for r in responses]
    assert [[d["user_id"] for d in r.json()["devices"]] for r in responses] == [[u] for u in users]
    # ...each in a container of its own, as the journal shows
    handled = [i for i in list(api.invocations) if i.started >= since]
    assert len({i.container for i in handled}) == len(users)
    assert max(sum(other.started <= i.started < other.at for other in handled) for i in handled) == len(users)
