"""Chaos run: Herald on the local stack with faults injected, then a ledger of every delivery.

    python -m bench.chaos --deliveries 5000            (PYTHONPATH=functions:. ; `make chaos`)

1. Starts the local stack in this process with a FaultPlan (transient, permanent and
   crash-after-send faults at every provider, duplicated queue messages, and messages handled
   together with concurrent copies of themselves, in the same batch and in a parallel batch) and fast retries
   (retry base and cap 1 s, deliver timeout 2 s, priority queue visibility 12 s, so a crashed
   batch is back within seconds).
2. Registers users with several devices each (email, sms, push on APNs or FCM, in-app; some
   users with a second email and a second push device), each with its own address or token so
   the providers' records say which device got what.
3. Sends notifications (1-3 recipients, priorities mixed) until N deliveries are planned,
   paced so the queues stay shallow (moto's SQS slows down with depth).
4. Waits, bounded, until every notification is final and the priority queues are empty.
5. Redrives every DLQ through the DlqRedriveFunction, faults still on by default (a redrive
   happens while providers still misbehave; `--redrive-without-faults` models "the outage is
   over"), and waits again.
6. Prints the ledger (bench/ledger.py) built from the providers' own records (SES, SNS SMS and
   push as moto keeps them; the in-app inbox through the API) and the status store (GET
   /notifications/{id}): a table, then one JSON line.

Exit status: 0 when nothing was lost and nothing sent twice, 1 otherwise, 2 when the run failed.
Progress goes to stderr; stdout holds only the table and the JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.ledger import TERMINAL, DeliveryOutcome, Ledger, build_ledger
from herald_local.emulator import emulator_figures
from herald_local.faults import ChannelFaults, FaultPlan
from herald_local.providers import MotoProviderRecords
from herald_local.stack import LocalStack, StackOptions

API_KEY = "chaos"
FAST = {
    **{f"{p}{b}": "1" for p in ("High", "Normal", "Low") for b in ("RetryBaseSeconds", "RetryCapSeconds")},
    "DeliverTimeoutSeconds": "2",
    "PriorityQueueVisibilitySeconds": "12",
}
PRIORITIES = (("high", 0.4), ("normal", 0.4), ("low", 0.2))
FINAL_NOTIFICATION = frozenset({"delivered", "partially_delivered", "failed", "dead_lettered", "no_devices"})
MARKER = re.compile(r"chaos-(\d{6})-")


class ChaosError(Exception):
    """The run could not be carried out (as opposed to a promise being broken)."""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the workload


@dataclass(frozen=True)
class DevicePlan:
    user_id: str
    device_id: str
    channel: str
    address: str | None = None
    platform: str | None = None

    def registration(self) -> dict[str, str]:
        body = {"channel": self.channel}
        if self.address:
            body["address"] = self.address
        if self.platform:
            body["platform"] = self.platform
        return body


@dataclass
class NotificationPlan:
    sequence: int
    recipients: list[str]
    priority: str
    deliveries: list[DevicePlan]
    notification_id: str = ""

    @property
    def body(self) -> str:
        return f"chaos-{self.sequence:06d}-{self.priority}"  # found again in every provider's record


def devices_for(users: int, run: str) -> dict[str, list[DevicePlan]]:
    """Each user: an email, an sms, a push (APNs or FCM) and an in-app device; every third user
    also a work email and a second push device. Every address and token is unique to its device."""
    plan: dict[str, list[DevicePlan]] = {}
    for u in range(users):
        user = f"chaos-{run}-u{u:04d}"
        platform = ("apns", "fcm")[u % 2]
        devices = [
            DevicePlan(user, "mail", "email", f"{user}.mail@example.com"),
            DevicePlan(user, "phone", "sms", f"+1555{u:07d}"),
            DevicePlan(user, "pocket", "push", f"token-{user}-pocket", platform),
            DevicePlan(user, "web", "in_app"),
        ]
        if u % 3 == 0:
            devices.append(DevicePlan(user, "work", "email", f"{user}.work@example.com"))
            devices.append(DevicePlan(user, "tablet", "push", f"token-{user}-tablet", ("fcm", "apns")[u % 2]))
        plan[user] = devices
    return plan


def notifications_for(
    devices: dict[str, list[DevicePlan]], deliveries: int, rng: random.Random
) -> list[NotificationPlan]:
    """Notifications to 1-3 users each, priorities mixed, until `deliveries` deliveries are planned."""
    users = sorted(devices)
    plans: list[NotificationPlan] = []
    planned = 0
    while planned < deliveries:
        recipients = rng.sample(users, k=min(rng.randint(1, 3), len(users)))
        priority = rng.choices([p for p, _ in PRIORITIES], weights=[w for _, w in PRIORITIES])[0]
        targets = [device for user in recipients for device in devices[user]]
        plans.append(NotificationPlan(len(plans), recipients, priority, targets))
        planned += len(targets)
    return plans


# ---------------------------------------------------------------- talking to Herald


class HeraldApi:
    """Herald's HTTP API as the run uses it; waits out the usage plan's 429s."""

    def __init__(self, url: str, api_key: str):
        self.url = url
        self.http = requests.Session()
        self.http.headers["x-api-key"] = api_key
        self.throttled = 0

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        for attempt in range(50):
            response = self.http.request(method, f"{self.url}{path}", timeout=30, **kwargs)
            if response.status_code != 429:
                break
            self.throttled += 1
            time.sleep(min(0.05 * 2**attempt, 1.0))
        if response.status_code != expect:
            raise ChaosError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def register(self, device: DevicePlan) -> None:
        self.call("PUT", f"/users/{device.user_id}/devices/{device.device_id}", json=device.registration())

    def send(self, plan: NotificationPlan) -> str:
        body = {"recipients": plan.recipients, "title": "Chaos", "body": plan.body, "priority": plan.priority}
        notification_id: str = self.call("POST", "/notifications", expect=202, json=body)["notification_id"]
        return notification_id

    def status(self, notification_id: str) -> dict[str, Any]:
        status: dict[str, Any] = self.call("GET", f"/notifications/{notification_id}")
        return status

    def queues(self) -> dict[str, dict[str, Any]]:
        """GET /queues, each priority's intake queue named "intake-<priority>" beside the priority queues."""
        queues: dict[str, Any] = self.call("GET", "/queues")
        intake = queues.pop("intake")
        return {**queues, **{f"intake-{priority}": depth for priority, depth in intake.items()}}

    def busy(self) -> int:
        """Messages visible or in flight on the intake and priority queues."""
        return sum(q["visible"] + q["in_flight"] for q in self.queues().values())

    def still_working(self) -> int:
        """Messages that may still change a delivery: on the priority queues, or waiting on an intake queue.

        An intake message in flight once every notification is fanned out is a copy that found another
        invocation fanning out (it comes back when that claim expires, up to the fan-out's 60 s
        timeout, and finds the work done): nothing to wait for.
        """
        queues = self.queues()
        return sum(q["visible"] + (0 if name.startswith("intake-") else q["in_flight"]) for name, q in queues.items())

    def dead_lettered(self) -> dict[str, int]:
        return {name: q["dead_lettered"] for name, q in self.queues().items()}

    def devices(self, user: str) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = self.call("GET", f"/users/{user}/devices")["devices"]
        return devices

    def inbox(self, user: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = self.call("GET", f"/users/{user}/inbox", params=params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items


def is_final(status: dict[str, Any]) -> bool:
    return status["status"] in FINAL_NOTIFICATION and all(d["status"] in TERMINAL for d in status["deliveries"])


@dataclass
class Settled:
    final: bool  # every notification final
    not_final: int  # notifications not final when the run stopped waiting
    seconds: float


def settle(api: HeraldApi, notification_ids: list[str], timeout: float) -> Settled:
    """Waits until the priority queues stay empty and every notification is fanned out, then until
    every notification is final or nothing can change any more; bounded by `timeout`.

    A delivery whose message left for a DLQ without Herald recording it (a batch that crashed on
    its last allowed receive, say) stays not final until a redrive: waiting longer would not help.
    """
    started = time.monotonic()
    pending = list(notification_ids)
    quiet = 0
    while time.monotonic() - started < timeout:
        statuses = {n: api.status(n) for n in pending}
        pending = [n for n, status in statuses.items() if not is_final(status)]
        fanned_out = all(statuses[n]["status"] != "accepted" for n in pending)
        quiet = quiet + 1 if fanned_out and api.still_working() == 0 else 0
        # Quiet on two looks a second apart (a crashed batch counts as in flight until it returns);
        # some not final after five: only a redrive can move them.
        if (not pending and quiet >= 2) or quiet >= 5:
            break
        progress(f"  waiting: {len(pending)} notifications not final")
        time.sleep(1.0)
    return Settled(not pending, len(pending), round(time.monotonic() - started, 2))


def is_inactive(device: dict[str, Any]) -> bool:
    """Whether the device API reports a device inactive (SNS refused its push endpoint for good)."""
    return device.get("active") is False


# ---------------------------------------------------------------- the providers' own records


def provider_copies(
    providers: MotoProviderRecords, api: HeraldApi, devices: dict[str, list[DevicePlan]], by_sequence: dict[int, str]
) -> tuple[Counter[tuple[str, str, str]], int]:
    """Copies per (notification, user, device), read from each provider; and copies matching no device."""
    by_address = {d.address: d for ds in devices.values() for d in ds if d.address}
    copies: Counter[tuple[str, str, str]] = Counter()
    unmatched = 0

    def count(address: str, text: str) -> None:
        nonlocal unmatched
        device = by_address.get(address)
        found = MARKER.search(text)
        notification = by_sequence.get(int(found.group(1))) if found else None
        if device is None or notification is None:
            unmatched += 1
        else:
            copies[(notification, device.user_id, device.device_id)] += 1

    started = time.monotonic()
    for email in providers.emails():
        for address in email.to:
            count(address, email.body)
    for sms in providers.sms():
        count(sms.phone_number, sms.message)
    for push in providers.pushes():
        count(push.token, json.dumps(push.message))
    progress(f"  read SES, SNS SMS and push records in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    for user in devices:
        for item in api.inbox(user):
            copies[(item["notification_id"], user, item["device_id"])] += 1
    progress(f"  read {len(devices)} in-app inboxes in {time.monotonic() - started:.1f} s")
    return copies, unmatched


# ---------------------------------------------------------------- the run


@dataclass
class ChaosConfig:
    deliveries: int = 1000
    users: int | None = None  # default: about one user per 25 deliveries, 8 to 200
    seed: int = 1
    transient: float = 0.2
    permanent: float = 0.01
    crashes: float = 0.02
    duplicates: float = 0.05
    copies: float = 0.05  # messages handled together with concurrent copies of themselves
    copies_in_batch: int = 2
    copies_in_parallel_batch: int = 2
    latency_ms: int = 0
    rate: float = 20.0  # notifications per second, at most
    max_busy: int = 150  # messages visible or in flight on the priority queues before sending pauses
    settle_timeout: float = 300.0
    redrive_with_faults: bool = True
    atomic_dynamodb: bool = True  # False: moto's DynamoDB as it comes, to see the ledger catch its race

    def plan(self) -> FaultPlan:
        return FaultPlan(
            seed=self.seed,
            duplicate_rate=self.duplicates,
            concurrent_copy_rate=self.copies,
            copies_in_batch=self.copies_in_batch,
            copies_in_parallel_batch=self.copies_in_parallel_batch,
            default=ChannelFaults(
                transient_rate=self.transient,
                permanent_rate=self.permanent,
                crash_after_send_rate=self.crashes,
                latency_ms=self.latency_ms,
            ),
        )


@dataclass
class ChaosResult:
    config: ChaosConfig
    ledger: Ledger
    settled: Settled
    resettled: Settled
    notifications: int
    users: int
    devices: int
    redrive: dict[str, Any]
    injected: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    max_busy_seen: int = 0
    throttled: int = 0
    lock_waits: dict[str, Any] = field(default_factory=dict)  # DynamoDB requests' waits for their turn

    def as_dict(self) -> dict[str, Any]:
        return {
            "deliveries_planned": self.ledger.accepted,
            "notifications": self.notifications,
            "users": self.users,
            "devices": self.devices,
            "faults": self.config.plan().model_dump(mode="json"),
            "redrive_with_faults": self.config.redrive_with_faults,
            "atomic_dynamodb": self.config.atomic_dynamodb,
            "injected": self.injected,
            "settled": self.settled.final,
            "not_final_before_redrive": self.settled.not_final,
            "settled_after_redrive": self.resettled.final,
            "not_final_after_redrive": self.resettled.not_final,
            "redrive": self.redrive,
            "max_priority_queue_messages": self.max_busy_seen,
            "api_throttled": self.throttled,
            "dynamodb_lock_waits": self.lock_waits,
            "seconds": {**self.seconds, "settle": self.settled.seconds, "settle_after_redrive": self.resettled.seconds},
            "ledger": self.ledger.as_dict(),
            "pass": self.ledger.holds,
        }


def run(config: ChaosConfig) -> ChaosResult:
    rng = random.Random(config.seed)
    run_tag = uuid.uuid4().hex[:6]
    users = config.users or min(max(config.deliveries // 25, 8), 200)
    devices = devices_for(users, run_tag)
    plans = notifications_for(devices, config.deliveries, rng)
    seconds: dict[str, float] = {}
    logging.getLogger("herald_local").setLevel(logging.ERROR)  # each crashed batch would log a warning
    options = StackOptions(
        api_port=0,
        api_key=API_KEY,
        parameters=FAST,
        faults=config.plan(),
        log_level="CRITICAL",
        atomic_dynamodb=config.atomic_dynamodb,
    )
    started = time.monotonic()
    with LocalStack(options) as stack:
        assert stack.endpoint is not None and stack.faults is not None
        if not stack.emulated:
            raise ChaosError("the ledger reads what providers received from moto: unset AWS_ENDPOINT_URL*")
        api = HeraldApi(stack.api_url, stack.api_key)
        seconds["start"] = time.monotonic() - started

        mark = time.monotonic()
        for user_devices in devices.values():
            for device in user_devices:
                api.register(device)
        seconds["register"] = time.monotonic() - mark
        progress(f"registered {sum(map(len, devices.values()))} devices of {users} users")

        mark = time.monotonic()
        max_busy = 0
        for index, plan in enumerate(plans):
            plan.notification_id = with_api_errors(stack, lambda plan=plan: api.send(plan))
            if index % 10 == 9:
                busy = api.busy()
                max_busy = max(max_busy, busy)
                while busy > config.max_busy:
                    time.sleep(0.5)
                    busy = api.busy()
                progress(f"sent {index + 1}/{len(plans)} notifications; {busy} messages on the priority queues")
            time.sleep(max(0.0, mark + (index + 1) / config.rate - time.monotonic()))
        seconds["send"] = time.monotonic() - mark

        ids = [plan.notification_id for plan in plans]
        settled = settle(api, ids, config.settle_timeout)

        dead_before = {
            (plan.notification_id, d["user_id"], d["device_id"])
            for plan in plans
            for d in api.status(plan.notification_id)["deliveries"]
            if d["status"] == "dead_lettered"
        }
        waiting = api.dead_lettered()
        if not config.redrive_with_faults:
            stack.faults.plan = FaultPlan(seed=config.seed)
        moved = stack.functions["DlqRedriveFunction"].invoke({"priority": "all"})
        resettled = settle(api, ids, config.settle_timeout)
        progress(
            f"redrive moved {moved.get('total_moved')} messages; dead-lettered deliveries before: {len(dead_before)}"
        )

        mark = time.monotonic()
        by_sequence = {plan.sequence: plan.notification_id for plan in plans}
        copies, unmatched = provider_copies(MotoProviderRecords(stack.endpoint), api, devices, by_sequence)
        inactive = {
            (user, device["device_id"]) for user in devices for device in api.devices(user) if is_inactive(device)
        }
        mark_statuses = time.monotonic()
        outcomes = outcomes_of(plans, {plan.notification_id: api.status(plan.notification_id) for plan in plans})
        progress(f"  read {len(plans)} statuses in {time.monotonic() - mark_statuses:.1f} s")
        outcomes = [
            DeliveryOutcome(
                **{
                    **o.__dict__,
                    "provider_records": copies.pop((o.notification_id, o.user_id, o.device_id), 0),
                    "redriven": o.redriven or (o.notification_id, o.user_id, o.device_id) in dead_before,
                    "device_inactive": (o.user_id, o.device_id) in inactive,
                }
            )
            for o in outcomes
        ]
        counts = stack.faults.counts()
        ledger = build_ledger(outcomes, unmatched + sum(copies.values()), counts.provider_calls)
        seconds["ledger"] = time.monotonic() - mark
        return ChaosResult(
            config=config,
            ledger=ledger,
            settled=settled,
            resettled=resettled,
            notifications=len(plans),
            users=users,
            devices=sum(map(len, devices.values())),
            redrive={"dlq_messages_before": waiting, "moved": moved, "dlq_messages_after": api.dead_lettered()},
            injected=counts.model_dump(mode="json"),
            seconds={name: round(value, 2) for name, value in seconds.items()},
            max_busy_seen=max_busy,
            throttled=api.throttled,
            lock_waits=lock_waits(stack),
        )


def with_api_errors(stack: LocalStack, call: Any) -> Any:
    """The call's answer; if the API answered an error, the error says what the API function raised."""
    try:
        return call()
    except ChaosError as error:
        raised = [i.error for i in list(stack.functions["ApiFunction"].invocations) if i.error][-3:]
        raise ChaosError(f"{error}; the API function's last errors: {raised or 'none'}") from None


def outcomes_of(plans: list[NotificationPlan], statuses: dict[str, dict[str, Any]]) -> list[DeliveryOutcome]:
    """One outcome per planned delivery, with the status store's word on it (provider counts come later);
    a delivery the status store has but the plan lacks is included too."""
    outcomes = []
    for plan in plans:
        recorded = {(d["user_id"], d["device_id"]): d for d in statuses[plan.notification_id]["deliveries"]}
        planned = {(d.user_id, d.device_id): d.channel for d in plan.deliveries}
        for user, device in sorted(planned.keys() | recorded.keys()):
            status = recorded.get((user, device), {})
            outcomes.append(
                DeliveryOutcome(
                    notification_id=plan.notification_id,
                    user_id=user,
                    device_id=device,
                    channel=status.get("channel") or planned[(user, device)],
                    status=status.get("status"),
                    last_error=status.get("last_error"),
                    redriven=bool(status.get("redrives")),
                )
            )
    return outcomes


def lock_waits(stack: LocalStack) -> dict[str, Any]:
    """How long DynamoDB requests waited for their turn on the stack's emulator (wherever it runs)."""
    if stack.emulator is None:
        return {}
    waits = emulator_figures(stack.emulator.endpoint)["lock_waits"]
    mean = waits["seconds"] / waits["requests"] if waits["requests"] else 0.0
    return {"requests": waits["requests"], "mean_s": round(mean, 4), "longest_s": round(waits["longest"], 3)}


def print_report(result: ChaosResult) -> None:
    config, injected = result.config, result.injected
    print(
        f"Chaos run: {result.ledger.accepted} deliveries ({result.notifications} notifications, "
        f"{result.users} users, {result.devices} devices); faults per provider call: transient "
        f"{config.transient:.0%}, permanent {config.permanent:.0%}, crash after send {config.crashes:.0%}; "
        f"duplicated messages {config.duplicates:.0%}; messages with concurrent copies {config.copies:.0%} "
        f"({config.copies_in_batch} in the same batch, {config.copies_in_parallel_batch} in a parallel batch); "
        f"seed {config.seed}{'' if config.atomic_dynamodb else '; DynamoDB NOT atomic (moto as it comes)'}."
    )
    kinds = ("provider_calls", "transient", "permanent", "crashes")
    print("injected   " + "  ".join(f"{kind:>14}" for kind in kinds))
    for channel, counts in injected["channels"].items():
        print(f"{channel:<10} " + "  ".join(f"{counts[kind]:>14}" for kind in kinds))
    print(f"duplicated queue messages: {sum(injected['duplicates'].values())}")
    copies = injected.get("concurrent_copies", {}).values()
    print(
        f"messages handled with concurrent copies: {sum(c['messages'] for c in copies)} "
        f"({sum(c['in_batch'] for c in copies)} copies in the same batch, "
        f"{sum(c['in_parallel_batch'] for c in copies)} in a parallel batch)"
    )
    print(
        f"not final when the queues went quiet: {result.settled.not_final} notifications; "
        f"redrive moved {result.redrive['moved'].get('total_moved')} "
        f"(faults {'on' if config.redrive_with_faults else 'off'}); "
        f"not final after it: {result.resettled.not_final}"
    )
    if result.lock_waits:
        waits = result.lock_waits
        print(
            f"DynamoDB requests, one at a time: {waits['requests']}; waited for their turn "
            f"{waits['mean_s'] * 1000:.1f} ms on average, {waits['longest_s']:.2f} s at most"
        )
    rows = result.ledger.rows()
    width = max(len(label) for label, _ in rows)
    print("LEDGER")
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")
    for category, keys in result.ledger.examples.items():
        print(f"  e.g. {category.value}: {', '.join(keys)}")
    print(f"Promise {'HOLDS' if result.ledger.holds else 'BROKEN'}: lost and sent twice must both be 0.")


def main(argv: list[str] | None = None) -> int:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=defaults.deliveries, help="deliveries to plan")
    parser.add_argument("--users", type=int, help="users (default: deliveries / 25, 8 to 200)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--transient", type=float, default=defaults.transient, help="rate per provider call")
    parser.add_argument("--permanent", type=float, default=defaults.permanent, help="rate per call (not in_app)")
    parser.add_argument("--crashes", type=float, default=defaults.crashes, help="crash-after-send rate per call")
    parser.add_argument("--duplicates", type=float, default=defaults.duplicates, help="duplicated queue messages")
    parser.add_argument(
        "--copies", type=float, default=defaults.copies, help="messages handled with concurrent copies of themselves"
    )
    parser.add_argument("--copies-in-batch", type=int, default=defaults.copies_in_batch, help="copies per message")
    parser.add_argument(
        "--copies-in-parallel-batch", type=int, default=defaults.copies_in_parallel_batch, help="copies per message"
    )
    parser.add_argument("--latency-ms", type=int, default=defaults.latency_ms, help="added before each call")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="notifications per second, at most")
    parser.add_argument("--max-busy", type=int, default=defaults.max_busy, help="queue messages before pausing")
    parser.add_argument("--settle-timeout", type=float, default=defaults.settle_timeout, help="seconds, per wait")
    parser.add_argument(
        "--redrive-without-faults", action="store_true", help="turn faults off before redriving the DLQs"
    )
    parser.add_argument(
        "--racy-dynamodb",
        action="store_true",
        help="serve DynamoDB as moto does, requests side by side (its conditional writes are not atomic): "
        "shows what the ledger catches without the local stack's fix",
    )
    args = parser.parse_args(argv)
    config = ChaosConfig(
        deliveries=args.deliveries,
        users=args.users,
        seed=args.seed,
        transient=args.transient,
        permanent=args.permanent,
        crashes=args.crashes,
        duplicates=args.duplicates,
        copies=args.copies,
        copies_in_batch=args.copies_in_batch,
        copies_in_parallel_batch=args.copies_in_parallel_batch,
        latency_ms=args.latency_ms,
        rate=args.rate,
        max_busy=args.max_busy,
        settle_timeout=args.settle_timeout,
        redrive_with_faults=not args.redrive_without_faults,
        atomic_dynamodb=not args.racy_dynamodb,
    )
    try:
        result = run(config)
    except (ChaosError, requests.RequestException) as error:
        progress(f"chaos run failed: {error}")
        return 2
    print_report(result)
    print(json.dumps(result.as_dict()))
    return 0 if result.ledger.holds else 1


if __name__ == "__main__":
    sys.exit(main())
