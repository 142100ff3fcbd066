"""Preferences at fan-out: opt-outs skip with a reason, required categories bypass them, quiet hours defer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from herald.adapters.topics import shard_of
from herald.logic.fanout import PageLimits, fan_out, plan_page
from herald.logic.preferences import DeliveryRules, RequiredCategoryOptOut, check_preferences
from herald.models.domain import (
    Channel,
    DeliveryJob,
    DeliveryState,
    Notification,
    PagePosition,
    Priority,
    TemplateUse,
)
from herald.models.holds import HeldDeliveries
from herald.models.preferences import Preferences, QuietHours
from herald.models.status import PageOutcome
from tests.fakes import (
    FakeDeviceRegistry,
    FakeHistory,
    FakeHolds,
    FakeIntakeQueue,
    FakeProfileStore,
    FakePublisher,
    FakeStatusStore,
    FakeSubscribers,
    make_device,
)

# Tomorrow at noon: the status shows a deferred delivery as deferred only while its time is to come
NOON = (datetime.now(UTC) + timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
REQUIRED = frozenset({"security"})


def devices() -> FakeDeviceRegistry:
    return FakeDeviceRegistry(
        [
            make_device("ada", "mail", Channel.EMAIL, address="ada@example.com"),
            make_device("ada", "phone", Channel.SMS, address="+14155550100"),
            make_device("ada", "web", Channel.IN_APP),
            make_device("bob", "web", Channel.IN_APP),
        ]
    )


def note(**fields: object) -> Notification:
    values: dict[str, object] = {
        "notification_id": "n-1",
        "recipients": ["ada", "bob"],
        "title": "t",
        "body": "b",
        "accepted_at": NOON,
    }
    values.update(fields)
    return Notification.model_validate(values)


def rules(preferences: dict[str, Preferences], at: datetime = NOON) -> DeliveryRules:
    return DeliveryRules(FakeProfileStore(preferences), REQUIRED, clock=lambda: at)


def plan(
    notification: Notification, registry: FakeDeviceRegistry, delivery_rules: DeliveryRules
) -> tuple[list[DeliveryJob], PageOutcome]:
    """The one fan-out page of a notification to a few recipients."""
    return plan_page(notification, registry, FakeSubscribers(), PageLimits(), delivery_rules)


def routed(notification: Notification, preferences: dict[str, Preferences]) -> dict[str, str]:
    jobs, result = plan(notification, devices(), rules(preferences))
    outcome = {f"{j.user_id}/{j.device_id}": "send" for j in jobs}
    outcome |= {f"{s.user_id}/{s.device_id}": s.reason for s in result.skipped}
    outcome |= {f"{d.job.user_id}/{d.job.device_id}": f"defer {d.until:%H:%M}" for d in result.deferred}
    return outcome


def test_a_channel_turned_off_is_skipped_with_its_reason():
    # Given ada turned sms off
    preferences = {"ada": Preferences(channels={Channel.SMS: False})}

    # When a notification without category fans out
    outcome = routed(note(), preferences)

    # Then her sms delivery is skipped, saying why; the rest go
    assert outcome == {
        "ada/mail": "send",
        "ada/phone": "opted out: channel sms",
        "ada/web": "send",
        "bob/web": "send",
    }


def test_a_category_turned_off_on_one_channel_skips_only_that_channel_of_that_category():
    # Given ada turned marketing email off
    preferences = {"ada": Preferences(categories={"marketing": {Channel.EMAIL: False}})}

    # When a marketing notification and a billing one fan out
    marketing = routed(note(category="marketing"), preferences)
    billing = routed(note(category="billing"), preferences)

    # Then only the marketing email is skipped
    assert marketing["ada/mail"] == "opted out: category marketing on email"
    assert [reason for reason in marketing.values() if reason != "send"] == ["opted out: category marketing on email"]
    assert set(billing.values()) == {"send"}


def test_a_required_category_goes_through_every_opt_out():
    # Given ada turned email and sms off altogether
    preferences = {"ada": Preferences(channels={Channel.EMAIL: False, Channel.SMS: False})}

    # When a security notification (required) fans out
    outcome = routed(note(category="security"), preferences)

    # Then nothing is skipped
    assert set(outcome.values()) == {"send"}


def test_a_user_cannot_turn_a_required_category_off():
    # Given preferences that turn security email off
    preferences = Preferences(categories={"security": {Channel.EMAIL: False}, "marketing": {Channel.EMAIL: False}})

    # When they are checked against the required categories
    with pytest.raises(RequiredCategoryOptOut) as refused:
        check_preferences(preferences, REQUIRED)

    # Then the refusal names the category; turning it on explicitly is fine
    assert refused.value.field == "categories.security"
    check_preferences(Preferences(categories={"security": {Channel.EMAIL: True}}), REQUIRED)


def test_quiet_hours_defer_normal_and_low_but_never_high():
    # Given ada's quiet hours cover noon in UTC
    preferences = {"ada": Preferences(time_zone="UTC", quiet_hours=QuietHours(start="11:00", end="13:30"))}

    # When notifications of each priority fan out at noon
    by_priority = {p: routed(note(priority=p), preferences) for p in Priority}

    # Then ada's deliveries wait for 13:30 unless high; bob's go
    assert set(by_priority[Priority.HIGH].values()) == {"send"}
    for priority in (Priority.NORMAL, Priority.LOW):
        assert by_priority[priority] == {
            "ada/mail": "defer 13:30",
            "ada/phone": "defer 13:30",
            "ada/web": "defer 13:30",
            "bob/web": "send",
        }


def test_preferences_are_read_once_per_fan_out_for_all_recipients():
    # Given a store that counts its batched reads
    store = FakeProfileStore({"ada": Preferences(locale="fr")})

    # When a notification to two recipients fans out
    plan(note(), devices(), DeliveryRules(store, REQUIRED, clock=lambda: NOON))

    # Then one batched read asked for both
    assert store.batch_reads == [["ada", "bob"]]


def test_a_template_without_a_channel_skips_it_and_each_recipient_gets_their_locale():
    # Given a template with French and English email and in-app content only; ada reads fr-CA
    template = TemplateUse(
        template_id="welcome", locales=["en", "fr"], default_locale="en", channels=[Channel.EMAIL, Channel.IN_APP]
    )
    preferences = {"ada": Preferences(locale="fr-CA")}

    # When it fans out
    jobs, result = plan(note(title="", body="", template=template), devices(), rules(preferences))

    # Then sms is skipped for want of content, and each job names its locale
    assert [(s.device_id, s.reason) for s in result.skipped] == [("phone", "template welcome has no sms content")]
    assert {(j.user_id, j.device_id, j.content_locale) for j in jobs} == {
        ("ada", "mail", "fr"),
        ("ada", "web", "fr"),
        ("bob", "web", "en"),
    }


def test_fan_out_records_skipped_and_deferred_in_its_page_write_and_holds_the_deferred():
    # Given ada in quiet hours until 13:30 with sms off
    preferences = {
        "ada": Preferences(
            channels={Channel.SMS: False}, time_zone="UTC", quiet_hours=QuietHours(start="11:00", end="13:30")
        )
    }
    journal: list[str] = []
    status, holds, history = FakeStatusStore(journal), FakeHolds(journal), FakeHistory(journal)
    topic = FakePublisher(journal=journal)
    notification = note(priority=Priority.LOW)
    status.record_accepted(notification)

    # When it fans out
    fan_out(
        notification,
        devices(),
        FakeSubscribers(),
        topic,
        status,
        FakeIntakeQueue(),
        rules=rules(preferences),
        holds=holds,
        history=history,
    )

    # Then bob's is published, ada's two are held together until 13:30, and the page's one write records it all
    assert [(j.user_id, j.device_id) for j in topic.published] == [("bob", "web")]
    [(held, delay)] = holds.held
    assert isinstance(held.held, HeldDeliveries)
    assert [j.device_id for j in held.held.jobs] == ["mail", "web"]
    assert delay == 900  # the first hop of a 90-minute wait
    assert journal.count("status.record_page 00.000000") == 1
    # And that write comes before anything of the page goes out, held or published (a cancel races it)
    recorded = journal.index("status.record_page 00.000000")
    assert recorded < journal.index("holds.hold") and recorded < journal.index("topic.publish")
    record = status.get("n-1")
    assert record is not None
    assert record.counts == {"queued": 1, "skipped": 1, "deferred": 2}
    assert record.delivery_count == 3  # the skipped one is not a delivery
    states = {(d.user_id, d.device_id): (d.status, d.reason, d.deferred_until) for d in record.deliveries}
    assert states[("ada", "phone")] == (DeliveryState.SKIPPED, "opted out: channel sms", None)
    assert states[("ada", "mail")][0] is DeliveryState.DEFERRED
    assert states[("ada", "mail")][2] == NOON.replace(hour=13, minute=30)
    # And each recipient has one history entry
    assert sorted((user, entry.deliveries, entry.skipped, entry.deferred) for user, entry in history.entries) == [
        ("ada", 2, 1, 2),
        ("bob", 1, 0, 0),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "America"}, "time_zone"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00"}}, "quiet_hours"),  # no time zone
        ({"time_zone": "UTC", "quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours"),
        ({"time_zone": "UTC", "quiet_hours": {"start": "24:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"channels": {"fax": False}}, "channels.fax"),
        ({"categories": {"Marketing": {"email": False}}}, "categories.Marketing"),
        ({"locale": "french"}, "locale"),
    ],
)
def test_preferences_refuse_what_they_cannot_keep(body, field):
    # When preferences with one bad field are read
    with pytest.raises(ValidationError) as refused:
        Preferences.model_validate(body)

    # Then the error names that field
    assert field in {
        ".".join(str(part) for part in error["loc"]).replace(".[key]", "") for error in refused.value.errors()
    }


def test_a_topic_broadcast_page_applies_each_subscribers_preferences_and_quiet_hours():
    # Given a low-priority broadcast to "news", whose subscribers are ada (sms off, quiet until 13:30) and bob
    preferences = {
        "ada": Preferences(
            channels={Channel.SMS: False}, time_zone="UTC", quiet_hours=QuietHours(start="11:00", end="13:30")
        )
    }
    subscribers = FakeSubscribers({"news": ["ada", "bob"]})
    pages = {shard_of(user) for user in ("ada", "bob")}
    outcome: dict[str, str] = {}

    # When each chain's first page holding them is planned
    for chain in pages:
        broadcast = note(recipients=None, topic="news", priority=Priority.LOW, page=PagePosition(chain=chain))
        jobs, result = plan_page(broadcast, devices(), subscribers, PageLimits(), rules(preferences))
        outcome |= {f"{j.user_id}/{j.device_id}": "send" for j in jobs}
        outcome |= {f"{s.user_id}/{s.device_id}": s.reason for s in result.skipped}
        outcome |= {f"{d.job.user_id}/{d.job.device_id}": f"defer {d.until:%H:%M}" for d in result.deferred}

    # Then a subscriber's choices hold as for a named recipient: bob's goes, ada's sms is skipped, the rest waits
    assert outcome["bob/web"] == "send"
    assert outcome["ada/mail"] == outcome["ada/web"] == "defer 13:30"
    assert "sms" in outcome["ada/phone"]
