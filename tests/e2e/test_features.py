"""Preferences, quiet hours, scheduled sends, templates and inbox read state, end to end over HTTP.

Each test reads back what the providers received (SES, SNS SMS, SNS push, the inbox) and what
the status says. Both legs run them: SQS DelaySeconds, which the schedule queue is built on, is
honoured by moto and by LocalStack alike.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import Herald, eventually

pytestmark = pytest.mark.e2e


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def by_channel(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {delivery["channel"]: delivery for delivery in status["deliveries"]}


def inbox(herald: Herald, user: str, **query: Any) -> dict[str, Any]:
    response = herald.http.get(f"{herald.url}/users/{user}/inbox", params=query, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_opted_out_channel_is_skipped_and_recorded_and_a_required_category_is_not(herald: Herald) -> None:
    # Given a user with email and in-app devices who turned marketing email off, and email as a whole
    user = unique("opt")
    address = f"{user}@example.com"
    herald.put_device(user, "mail", {"channel": "email", "address": address})
    herald.put_device(user, "web", {"channel": "in_app"})
    preferences = {"channels": {"email": False}, "categories": {"marketing": {"email": False}}}
    response = herald.http.put(f"{herald.url}/users/{user}/preferences", json=preferences, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["required_categories"] == ["security"]

    # When a marketing notification and a security one are sent
    marketing = herald.send({"recipients": [user], "title": "Sale", "body": "50% off", "category": "marketing"})
    security = herald.send({"recipients": [user], "title": "New sign-in", "body": "From Paris", "category": "security"})

    # Then the marketing email is skipped, with its reason, and the in-app copy sent
    status = herald.wait_for_status(marketing, lambda s: s["status"] == "delivered")
    deliveries = by_channel(status)
    assert deliveries["email"]["status"] == "skipped"
    assert deliveries["email"]["reason"] == "opted out: category marketing on email"
    assert deliveries["in_app"]["status"] == "sent"
    assert status["counts"] == {"skipped": 1, "sent": 1}
    # ...while the required category reaches email all the same
    status = herald.wait_for_status(security, lambda s: s["status"] == "delivered")
    assert {d["channel"]: d["status"] for d in status["deliveries"]} == {"email": "sent", "in_app": "sent"}
    subjects = [m.subject for m in herald.providers.emails() if m.to == (address,)]
    assert subjects == ["New sign-in"]

    # And a user cannot opt out of the required category
    refused = herald.http.put(
        f"{herald.url}/users/{user}/preferences", json={"categories": {"security": {"email": False}}}, timeout=10
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "categories.security"


def test_a_low_notification_in_quiet_hours_waits_for_the_window_to_end_and_high_does_not(herald: Herald) -> None:
    # Given a user in Paris whose quiet hours started an hour ago and end in 12 seconds (room for a slow fan-out)
    user = unique("night")
    herald.put_device(user, "web", {"channel": "in_app"})
    local = datetime.now(ZoneInfo("Europe/Paris"))
    end = local + timedelta(seconds=12)
    window = {"start": (local - timedelta(hours=1)).strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S")}
    preferences = {"time_zone": "Europe/Paris", "quiet_hours": window}
    assert herald.http.put(f"{herald.url}/users/{user}/preferences", json=preferences, timeout=10).status_code == 200

    # When a low and a high notification are sent inside the window
    low = herald.send({"recipients": [user], "title": "Digest", "body": "Your week", "priority": "low"})
    high = herald.send({"recipients": [user], "title": "Code", "body": "123456", "priority": "high"})

    # Then the high one is delivered at once, and the low one shows deferred until the window's end
    herald.wait_for_status(high, lambda s: s["status"] == "delivered")
    status = herald.wait_for_status(low, lambda s: s["status"] == "in_progress" and s["fanned_out_at"])
    [delivery] = status["deliveries"]
    assert delivery["status"] == "deferred"
    until = datetime.fromisoformat(delivery["deferred_until"])
    assert until == end.replace(microsecond=0).astimezone(UTC)
    assert [item["notification_id"] for item in inbox(herald, user)["items"]] == [high]

    # And once the window ends it is delivered, not before
    status = herald.wait_for_status(low, lambda s: s["status"] == "delivered", timeout=40)
    [delivery] = status["deliveries"]
    assert datetime.fromisoformat(delivery["sent_at"]) >= until
    # (the inbox sorts by the time a notification was accepted: the low one came first)
    assert [item["notification_id"] for item in inbox(herald, user)["items"]] == [high, low]


def test_a_scheduled_notification_goes_at_its_time_and_a_cancelled_one_never(herald: Herald) -> None:
    # Given a user with an in-app device
    user = unique("later")
    herald.put_device(user, "web", {"channel": "in_app"})

    # When two notifications are scheduled 8 seconds ahead, and the second is cancelled
    send_at = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
    kept = herald.send({"recipients": [user], "title": "Reminder", "body": "Stand-up", "send_at": send_at.isoformat()})
    dropped = herald.send({"recipients": [user], "title": "Oops", "body": "Never", "send_at": send_at.isoformat()})
    assert herald.status(kept)["status"] == "scheduled"
    assert herald.http.delete(f"{herald.url}/notifications/{dropped}", timeout=10).status_code == 204

    # Then the kept one is delivered at its time, not before
    status = herald.wait_for_status(kept, lambda s: s["status"] == "delivered", timeout=40)
    assert datetime.fromisoformat(status["fanned_out_at"]) >= send_at
    assert datetime.fromisoformat(status["deliveries"][0]["sent_at"]) >= send_at
    # ...the cancelled one never, even once its time has passed (fan-out dropped it)
    status = herald.status(dropped)
    assert (status["status"], status["deliveries"]) == ("cancelled", [])
    assert [item["notification_id"] for item in inbox(herald, user)["items"]] == [kept]
    # ...and a notification fanned out already cannot be cancelled
    late = herald.http.delete(f"{herald.url}/notifications/{kept}", timeout=10)
    assert late.status_code == 409
    assert late.json()["errors"][0]["field"] == "notification_id"


TEMPLATE = {
    "default_locale": "en",
    "locales": {
        "en": {
            "email": {
                "subject": "Welcome, {{ name }}",
                "html": "<h1>Hello {{ name }}</h1><p>Your plan: {{ plan }}</p>",
                "text": "Hello {{ name }}. Your plan: {{ plan }}",
            },
            "sms": {"text": "Hi {{ name }}, welcome to {{ plan }}"},
            "push": {"title": "Welcome {{ name }}", "body": "Plan {{ plan }} is ready"},
            "in_app": {"title": "Welcome", "body": "Hello {{ name }}", "data": {"url": "/plans/{{ plan }}"}},
        },
        "fr": {
            "email": {
                "subject": "Bienvenue, {{ name }}",
                "html": "<h1>Bonjour {{ name }}</h1><p>Votre offre : {{ plan }}</p>",
                "text": "Bonjour {{ name }}. Votre offre : {{ plan }}",
            },
            "sms": {"text": "Salut {{ name }}, bienvenue dans {{ plan }}"},
            "push": {"title": "Bienvenue {{ name }}", "body": "L'offre {{ plan }} est prête"},
            "in_app": {"title": "Bienvenue", "body": "Bonjour {{ name }}", "data": {"url": "/offres/{{ plan }}"}},
        },
    },
}


def test_a_template_is_rendered_per_channel_and_per_locale(herald: Herald) -> None:
    # Given a template in English and French, a user in fr-CA with four devices, and one without a locale
    template = unique("welcome")
    assert herald.http.put(f"{herald.url}/templates/{template}", json=TEMPLATE, timeout=10).status_code == 200
    amelie, bob = unique("amelie"), unique("bob")
    phone, token = "+33612345678", unique("fcm-token")
    herald.put_device(amelie, "mail", {"channel": "email", "address": f"{amelie}@example.com"})
    herald.put_device(amelie, "phone", {"channel": "sms", "address": phone})
    herald.put_device(amelie, "pixel", {"channel": "push", "address": token, "platform": "fcm"})
    herald.put_device(amelie, "web", {"channel": "in_app"})
    herald.put_device(bob, "mail", {"channel": "email", "address": f"{bob}@example.com"})
    herald.http.put(f"{herald.url}/users/{amelie}/preferences", json={"locale": "fr-CA"}, timeout=10)

    # When a notification names the template and its variables; a variable missing is refused at once
    plan = unique("pro")
    missing = herald.http.post(
        f"{herald.url}/notifications",
        json={"recipients": [amelie], "template": template, "variables": {"name": "Amélie"}},
        timeout=10,
    )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "variables"
    assert "'plan' is undefined" in missing.json()["errors"][0]["message"]
    notification_id = herald.send(
        {"recipients": [amelie, bob], "template": template, "variables": {"name": "Amélie <3", "plan": plan}}
    )

    # Then every delivery is sent, each in its recipient's locale and its channel's shape
    herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered")
    [french] = [m for m in herald.providers.emails() if m.to == (f"{amelie}@example.com",)]
    assert french.subject == "Bienvenue, Amélie <3"
    html = f"<h1>Bonjour Amélie &lt;3</h1><p>Votre offre : {plan}</p>"  # the HTML part escapes its variables
    assert (french.html or french.body) == html
    if french.html is not None:  # LocalStack keeps both parts; moto keeps the HTML one only
        assert french.body == f"Bonjour Amélie <3. Votre offre : {plan}"
    [english] = [m for m in herald.providers.emails() if m.to == (f"{bob}@example.com",)]
    assert english.subject == "Welcome, Amélie <3"  # bob has no locale: the default, en
    [sms] = [m for m in herald.providers.sms() if m.phone_number == phone and plan in m.message]
    assert sms.message == f"Salut Amélie <3, bienvenue dans {plan}"
    [push] = [p for p in herald.providers.pushes() if p.token == token]
    fcm = json.loads(push.message["GCM"])["fcmV1Message"]["message"]["notification"]
    assert fcm == {"title": "Bienvenue Amélie <3", "body": f"L'offre {plan} est prête"}
    [item] = inbox(herald, amelie)["items"]
    assert (item["title"], item["body"], item["data"]) == ("Bienvenue", "Bonjour Amélie <3", {"url": f"/offres/{plan}"})


def test_inbox_read_state_unread_count_and_history(herald: Herald) -> None:
    # Given a user who received three in-app notifications
    user = unique("reader")
    herald.put_device(user, "web", {"channel": "in_app"})
    sent = [herald.send({"recipients": [user], "title": f"n{n}", "body": "hello"}) for n in range(3)]
    for notification_id in sent:
        herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered")

    def unread() -> int:
        response = herald.http.get(f"{herald.url}/users/{user}/inbox/unread-count", timeout=10)
        assert response.status_code == 200, response.text
        count: int = response.json()["unread"]
        return count

    # (the count reads an index, eventually consistent: wait for it)
    eventually(unread, lambda count: count == 3)
    items = inbox(herald, user)["items"]
    assert [item["read"] for item in items] == [False, False, False]

    # When one is marked read, then unread again
    item_url = f"{herald.url}/users/{user}/inbox/{items[0]['item_id']}"
    marked = herald.http.put(item_url, json={"read": True}, timeout=10)
    assert marked.status_code == 200 and marked.json()["read"] is True and marked.json()["read_at"]
    eventually(unread, lambda count: count == 2)
    assert herald.http.put(item_url, json={"read": False}, timeout=10).json()["read"] is False
    eventually(unread, lambda count: count == 3)

    # Then marking all read leaves none unread
    response = herald.http.post(f"{herald.url}/users/{user}/inbox/mark-all-read", timeout=10)
    assert response.json() == {"marked": 3, "more": False}
    eventually(unread, lambda count: count == 0)
    assert [item["read"] for item in inbox(herald, user)["items"]] == [True, True, True]
    unknown = herald.http.put(f"{herald.url}/users/{user}/inbox/bm90LWFuLWl0ZW0", json={"read": True}, timeout=10)
    assert unknown.status_code == 404

    # And the user's history lists the three, newest first, a page at a time
    first = herald.http.get(f"{herald.url}/users/{user}/notifications", params={"limit": 2}, timeout=10).json()
    rest = herald.http.get(
        f"{herald.url}/users/{user}/notifications", params={"cursor": first["next_cursor"]}, timeout=10
    ).json()
    listed = [entry["notification_id"] for entry in first["notifications"] + rest["notifications"]]
    assert listed == list(reversed(sent))
    assert first["notifications"][0]["channels"] == ["in_app"]
