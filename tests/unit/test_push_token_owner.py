"""A push token belongs to one user at a time (issue 10, finding 1): registering it for another user
moves it there, visibly, and a logout never deletes an endpoint another device still uses."""

from __future__ import annotations

import threading

from herald.logic.fanout import FanoutResult, PageLimits, plan_page
from herald.logic.registration import (
    MOVED_MEANWHILE,
    MOVED_TO_ANOTHER_USER,
    moved_to_device,
    register_device,
    unregister_device,
)
from herald.models.api import PushRegistration
from herald.models.domain import Channel, Device, DeviceKey, Notification, Platform, now
from tests.fakes import FakeDeviceRegistry, FakePushEndpoints, FakeSubscribers, make_device

TOKEN = "tokX"


def push(token: str = TOKEN) -> PushRegistration:
    return PushRegistration(channel="push", address=token, platform=Platform.FCM)


def notification_to(*users: str) -> Notification:
    return Notification(notification_id="n-1", recipients=list(users), title="t", body="b", accepted_at=now())


def plan_deliveries(notification: Notification, registry: FakeDeviceRegistry) -> FanoutResult:
    """What fan-out would publish for the notification (its first page), and what that page would record."""
    jobs, outcome = plan_page(notification, registry, FakeSubscribers(), PageLimits())
    return FanoutResult(jobs=jobs, outcome=outcome)


def test_alice_then_bob_register_one_token_and_only_bob_gets_pushes_from_then_on():
    # Given alice registered her phone's token
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    alices = register_device(registry, endpoints, "alice", "phone", push())

    # When bob registers the same token (a shared or resold phone, or alice's logout never reached Herald)
    bobs = register_device(registry, endpoints, "bob", "phone", push())

    # Then, from bob's side: his device is active on the token's one endpoint, and a notification to him goes there
    assert bobs.endpoint_arn == alices.endpoint_arn
    bob = registry.get("bob", "phone")
    assert bob is not None and bob.active and bob.endpoint_arn == alices.endpoint_arn
    to_bob = plan_deliveries(notification_to("bob"), registry)
    assert [(job.user_id, job.endpoint_arn) for job in to_bob.jobs] == [("bob", alices.endpoint_arn)]
    # and from alice's side: her device says why it stopped, has no endpoint, and a notification to her goes nowhere
    alice = registry.get("alice", "phone")
    assert alice is not None and not alice.active
    assert alice.inactive_reason == MOVED_TO_ANOTHER_USER and alice.inactive_since is not None
    assert alice.endpoint_arn is None
    to_alice = plan_deliveries(notification_to("alice"), registry)
    assert to_alice.jobs == [] and to_alice.inactive_skipped == ["alice/phone"]


def test_alices_logout_after_the_move_leaves_bobs_endpoint_and_bob_active():
    # Given alice's token moved to bob
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    register_device(registry, endpoints, "alice", "phone", push())
    bobs = register_device(registry, endpoints, "bob", "phone", push())

    # When alice logs out of her phone
    assert unregister_device(registry, endpoints, "alice", "phone") is True

    # Then her device is gone, and bob's endpoint is not deleted: bob still gets pushes
    assert registry.get("alice", "phone") is None
    assert endpoints.removed == []
    assert bobs.endpoint_arn in endpoints.endpoints
    bob = registry.get("bob", "phone")
    assert bob is not None and bob.active and bob.endpoint_arn == bobs.endpoint_arn


def test_the_last_holders_logout_deletes_the_endpoint():
    # Given the token moved from alice to bob, and alice logged out
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    register_device(registry, endpoints, "alice", "phone", push())
    bobs = register_device(registry, endpoints, "bob", "phone", push())
    unregister_device(registry, endpoints, "alice", "phone")

    # When bob logs out too, Then the endpoint nobody uses any more is deleted
    unregister_device(registry, endpoints, "bob", "phone")
    assert endpoints.removed == [bobs.endpoint_arn]
    assert registry.holders == {}


def test_alice_registering_the_token_again_takes_it_back_from_bob():
    # Given the token moved from alice to bob
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    register_device(registry, endpoints, "alice", "phone", push())
    register_device(registry, endpoints, "bob", "phone", push())

    # When alice signs in again on that phone
    register_device(registry, endpoints, "alice", "phone", push())

    # Then she holds it again, and bob's device is the one that says it moved
    alice, bob = registry.get("alice", "phone"), registry.get("bob", "phone")
    assert alice is not None and alice.active and alice.endpoint_arn is not None
    assert bob is not None and not bob.active and bob.inactive_reason == MOVED_TO_ANOTHER_USER
    assert len(endpoints.endpoints) == 1


def test_one_user_registering_the_token_under_a_new_device_id_retires_the_old_one():
    # Given ada's phone registered as "phone"
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    register_device(registry, endpoints, "ada", "phone", push())

    # When the app, reinstalled, registers the same token as "phone-2"
    register_device(registry, endpoints, "ada", "phone-2", push())

    # Then only the new id gets pushes; the old one says where the token went
    old, new = registry.get("ada", "phone"), registry.get("ada", "phone-2")
    assert old is not None and not old.active and old.inactive_reason == moved_to_device("phone-2")
    assert new is not None and new.active
    assert [job.device_id for job in plan_deliveries(notification_to("ada"), registry).jobs] == ["phone-2"]


def test_devices_registered_before_endpoints_had_holders_are_found_through_the_index():
    # Given alice and carol both pointing at one endpoint, stored before Herald kept holders (no holder item)
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    arn = endpoints.register(Platform.FCM, TOKEN, "alice", None)
    for user in ("alice", "carol"):
        registry.put(make_device(user, "phone", Channel.PUSH, address=TOKEN, platform=Platform.FCM, endpoint_arn=arn))

    # When alice logs out, Then the endpoint carol uses stays
    unregister_device(registry, endpoints, "alice", "phone")
    assert endpoints.removed == []

    # When bob registers that token, Then carol's device moves off it too
    register_device(registry, endpoints, "bob", "phone", push())
    carol = registry.get("carol", "phone")
    assert carol is not None and not carol.active and carol.endpoint_arn is None


class RegistryPausingBeforeWrites(FakeDeviceRegistry):
    """Lets a test hold one registration between taking the endpoint and writing its device."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: dict[str, threading.Event] = {}
        self.arrived: dict[str, threading.Event] = {}

    def put(self, device: Device) -> None:
        if device.user_id in self.paused:
            self.arrived[device.user_id].set()
            assert self.paused[device.user_id].wait(5)
        super().put(device)

    def pause(self, user_id: str) -> None:
        self.paused[user_id], self.arrived[user_id] = threading.Event(), threading.Event()


def test_two_registrations_of_one_token_racing_leave_exactly_the_later_holder_active():
    # Given alice's registration has taken the endpoint but not written her device yet
    registry, endpoints = RegistryPausingBeforeWrites(), FakePushEndpoints()
    registry.pause("alice")
    alice = threading.Thread(target=register_device, args=(registry, endpoints, "alice", "phone", push()))
    alice.start()
    assert registry.arrived["alice"].wait(5)

    # When bob's registration of the same token runs from start to end, and then alice's finishes
    bobs = register_device(registry, endpoints, "bob", "phone", push())
    registry.paused["alice"].set()
    alice.join(5)

    # Then bob, whose registration took the endpoint last, holds it and is active; alice found she lost it
    assert registry.holders[bobs.endpoint_arn] == DeviceKey("bob", "phone")
    bob, alices = registry.get("bob", "phone"), registry.get("alice", "phone")
    assert bob is not None and bob.active and bob.endpoint_arn == bobs.endpoint_arn
    assert alices is not None and not alices.active and alices.inactive_reason == MOVED_MEANWHILE
    assert [job.user_id for job in plan_deliveries(notification_to("alice", "bob"), registry).jobs] == ["bob"]


def test_two_registrations_taking_the_endpoint_before_either_writes_leave_one_active_device():
    # Given alice's and bob's registrations both take the endpoint before either writes its device
    registry, endpoints = RegistryPausingBeforeWrites(), FakePushEndpoints()
    registry.pause("alice")
    registry.pause("bob")
    threads = {
        user: threading.Thread(target=register_device, args=(registry, endpoints, user, "phone", push()))
        for user in ("alice", "bob")
    }
    for thread in threads.values():
        thread.start()
    assert registry.arrived["alice"].wait(5) and registry.arrived["bob"].wait(5)

    # When both go on at once
    for user in ("alice", "bob"):
        registry.paused[user].set()
    for thread in threads.values():
        thread.join(5)

    # Then exactly one device is active on the endpoint, and it is the recorded holder
    [arn] = endpoints.endpoints
    active = [key for key, device in registry.devices.items() if device.active and device.endpoint_arn == arn]
    assert active == [tuple(registry.holders[arn])]
