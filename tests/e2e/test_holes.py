"""Issue 10's holes, driven from outside as they were found: over HTTP, reading back what providers received."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest
import requests

from herald_local.endpoints import emulator_at
from tests.e2e.conftest import Herald, eventually

pytestmark = pytest.mark.e2e
FINAL = {"delivered", "partially_delivered", "failed", "no_devices"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def devices_of(herald: Herald, user: str) -> dict[str, dict[str, Any]]:
    response = herald.http.get(f"{herald.url}/users/{user}/devices", timeout=10)
    assert response.status_code == 200, response.text
    return {device["device_id"]: device for device in response.json()["devices"]}


def push_bodies_to(herald: Herald, token: str) -> list[str]:
    bodies = []
    for push in herald.providers.pushes():
        if push.token == token:
            payload = push.message.get("default") or next(iter(push.message.values()))
            bodies.append(payload if isinstance(payload, str) else json.dumps(payload))
    return bodies


def test_a_token_registered_by_bob_after_alice_reaches_bob_only_and_alices_logout_keeps_it(herald: Herald) -> None:
    # Given alice, then bob, register the same phone token: both answered 200
    alice, bob, token = unique("alice"), unique("bob"), unique("tokX")
    phone = {"channel": "push", "address": token, "platform": "fcm"}
    assert herald.put_device(alice, "phone", phone).status_code == 200
    assert herald.put_device(bob, "phone", phone).status_code == 200

    # When each gets a notification
    to_alice = herald.send({"recipients": [alice], "title": "t", "body": f"secret for {alice}", "priority": "high"})
    to_bob = herald.send({"recipients": [bob], "title": "t", "body": f"hello {bob}", "priority": "high"})

    # Then, seen from alice: her phone is inactive, saying its token went to another user, and nothing went out for her
    alices = herald.wait_for_status(to_alice, lambda s: s["status"] in FINAL)
    assert (alices["status"], alices["inactive_devices_skipped"]) == ("no_devices", [f"{alice}/phone"])
    mine = devices_of(herald, alice)["phone"]
    assert mine["active"] is False and "registered by another user" in mine["inactive_reason"]
    # and seen from bob: his phone is active and his notification reached the phone, which never got alice's
    assert herald.wait_for_status(to_bob, lambda s: s["status"] in FINAL)["status"] == "delivered"
    assert devices_of(herald, bob)["phone"]["active"] is True
    bodies = eventually(lambda: push_bodies_to(herald, token), lambda b: any(bob in x for x in b), timeout=10)
    assert not any(alice in body for body in bodies)

    # When alice logs out of her phone
    assert herald.http.delete(f"{herald.url}/users/{alice}/devices/phone", timeout=10).status_code == 204

    # Then bob still gets pushes there
    again = herald.send({"recipients": [bob], "title": "t", "body": f"again {bob}", "priority": "high"})
    assert herald.wait_for_status(again, lambda s: s["status"] in FINAL)["status"] == "delivered"
    assert devices_of(herald, bob)["phone"]["active"] is True


@pytest.mark.parametrize(
    ("mailbox", "reason"), [("bounce", "SES reported a hard bounce"), ("complaint", "SES reported a complaint")]
)
def test_an_email_to_the_ses_simulator_ends_with_the_device_inactive_and_later_notifications_skip_it(
    herald: Herald, mailbox: str, reason: str
) -> None:
    # Given a user whose email device is SES's simulator mailbox, and who has an in-app inbox
    user = unique(mailbox)
    address = f"{mailbox}+{user}@simulator.amazonses.com"
    assert herald.put_device(user, "mail", {"channel": "email", "address": address}).status_code == 200
    assert herald.put_device(user, "web", {"channel": "in_app"}).status_code == 200

    # When a notification is sent: SES takes the email, then reports it bouncing (or its reader complaining)
    first = herald.send({"recipients": [user], "title": "t", "body": "b", "priority": "high"})
    assert herald.wait_for_status(first, lambda s: s["status"] in FINAL)["status"] == "delivered"

    # Then the feedback function marks the email device inactive, saying why
    mail = eventually(lambda: devices_of(herald, user)["mail"], lambda d: d["active"] is False, timeout=20)
    assert mail["inactive_reason"].startswith(reason)
    # and the next notification skips it, naming it, while the inbox still gets it
    second = herald.send({"recipients": [user], "title": "t", "body": "b", "priority": "high"})
    status = herald.wait_for_status(second, lambda s: s["status"] in FINAL)
    assert [d["device_id"] for d in status["deliveries"]] == ["web"]
    assert status["inactive_devices_skipped"] == [f"{user}/mail"]
    assert sum(address in m.to for m in herald.providers.emails()) == 1


def opted_out_number(herald: Herald) -> str:
    """A number the emulator serving SNS reports opted out: moto, one ending in 99; LocalStack, one opted out
    through its developer route (as a STOP reply would)."""
    number = f"+1415{random.randrange(10**6):06d}99"
    sns = herald.stack.endpoints["sns"]
    assert sns is not None
    if emulator_at(sns) == "localstack":
        account = herald.stack.stack.resolver.refs["AWS::AccountId"] if herald.stack.stack else "000000000000"
        opted = requests.post(
            f"{sns}/_aws/sns/phone-opt-outs", json={"phoneNumber": number, "accountId": account}, timeout=10
        )
        assert opted.ok, opted.text
    return number


def test_an_sms_to_an_opted_out_number_marks_its_device_inactive(herald: Herald) -> None:
    # Given a user whose phone number opted out of SMS, and who has an in-app inbox
    user, number = unique("stop"), opted_out_number(herald)
    assert herald.put_device(user, "phone", {"channel": "sms", "address": number}).status_code == 200
    assert herald.put_device(user, "web", {"channel": "in_app"}).status_code == 200

    # When a notification is sent
    first = herald.send({"recipients": [user], "title": "t", "body": "b", "priority": "high"})

    # Then no SMS goes out, the SMS delivery failed saying the number opted out, and the device is inactive
    status = herald.wait_for_status(first, lambda s: s["status"] in FINAL)
    sms = next(d for d in status["deliveries"] if d["device_id"] == "phone")
    assert sms["status"] == "failed" and sms["last_error"].startswith("OptedOut")
    assert [m for m in herald.providers.sms() if m.phone_number == number] == []
    phone = devices_of(herald, user)["phone"]
    assert phone["active"] is False and phone["inactive_reason"].startswith("OptedOut")
    # and the next notification skips it
    second = herald.send({"recipients": [user], "title": "t", "body": "b", "priority": "high"})
    assert herald.wait_for_status(second, lambda s: s["status"] in FINAL)["inactive_devices_skipped"] == [
        f"{user}/phone"
    ]
