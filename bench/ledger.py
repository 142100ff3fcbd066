"""The chaos ledger: what became of every accepted delivery, judged from the providers' own records
and the status store. Pure functions over plain records, so every rule is unit-tested by hand.

Each delivery (one notification to one device) lands in exactly one category:

- sent twice: the provider holds more than one copy (a promise broken, whatever the status says);
- outcome unconfirmed: recorded `failed` with a reason containing "outcome unknown" (its claim
  was held by an invocation that died; Herald does not resend rather than risk a duplicate);
  the provider may or may not hold one copy;
- delivered once: one copy at the provider and the status says `sent`;
- status disagrees: one copy at the provider but the status says otherwise (or is not final);
- failed permanently: no copy, status `failed`;
- dead-lettered: no copy, status `dead_lettered` (still waiting in a DLQ);
- skipped, device inactive: no status record and no copy, and the device is marked inactive
  (a permanent push failure disabled it before this notification was fanned out);
- lost: no copy and no final status, or status `sent` with no copy (a promise broken).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

OUTCOME_UNKNOWN = "outcome unknown"
TERMINAL = frozenset({"sent", "failed", "dead_lettered"})
EXAMPLES = 5


class Category(StrEnum):
    DELIVERED_ONCE = "delivered_once"
    FAILED_PERMANENTLY = "failed_permanently"
    DEAD_LETTERED = "dead_lettered"
    OUTCOME_UNCONFIRMED = "outcome_unconfirmed"
    SKIPPED_INACTIVE = "skipped_device_inactive"
    STATUS_DISAGREES = "status_disagrees"
    LOST = "lost"
    SENT_TWICE = "sent_twice"


@dataclass(frozen=True)
class DeliveryOutcome:
    """One accepted delivery as the status store and its channel's provider tell it."""

    notification_id: str
    user_id: str
    device_id: str
    channel: str
    status: str | None  # the status store's last word; None: it has no record of this delivery
    last_error: str | None = None
    provider_records: int = 0  # copies the channel's provider holds for this notification and device
    redriven: bool = False  # its message was moved back from a DLQ during the run
    device_inactive: bool = False  # the device is marked inactive (so fan-out may skip it)

    @property
    def key(self) -> str:
        return f"{self.notification_id}/{self.user_id}/{self.device_id}"


def categorize(outcome: DeliveryOutcome) -> Category:
    if outcome.provider_records > 1:
        return Category.SENT_TWICE
    if outcome.status == "failed" and OUTCOME_UNKNOWN in (outcome.last_error or ""):
        return Category.OUTCOME_UNCONFIRMED
    if outcome.provider_records == 1:
        return Category.DELIVERED_ONCE if outcome.status == "sent" else Category.STATUS_DISAGREES
    if outcome.status == "failed":
        return Category.FAILED_PERMANENTLY
    if outcome.status == "dead_lettered":
        return Category.DEAD_LETTERED
    if outcome.status is None and outcome.device_inactive:
        return Category.SKIPPED_INACTIVE
    return Category.LOST  # `sent` with nothing at the provider, or never reached a final status


@dataclass
class Ledger:
    accepted: int
    counts: dict[Category, int]
    redriven: int  # deliveries whose message came back from a DLQ
    redriven_then_delivered: int
    unplanned_provider_records: int  # copies at a provider that match no accepted delivery
    provider_calls: int
    examples: dict[Category, list[str]] = field(default_factory=dict)

    def __getitem__(self, category: Category) -> int:
        return self.counts.get(category, 0)

    @property
    def delivered(self) -> int:
        """Deliveries the providers hold at least once."""
        return self[Category.DELIVERED_ONCE] + self[Category.STATUS_DISAGREES] + self[Category.SENT_TWICE]

    @property
    def provider_calls_per_delivery(self) -> float | None:
        return round(self.provider_calls / self.delivered, 3) if self.delivered else None

    @property
    def holds(self) -> bool:
        """Herald's promise: nothing lost, nothing sent twice."""
        return self[Category.LOST] == 0 and self[Category.SENT_TWICE] == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            **{category.value: self[category] for category in Category},
            "redriven": self.redriven,
            "redriven_then_delivered": self.redriven_then_delivered,
            "unplanned_provider_records": self.unplanned_provider_records,
            "provider_calls": self.provider_calls,
            "provider_calls_per_delivery": self.provider_calls_per_delivery,
            "holds": self.holds,
            "examples": {category.value: keys for category, keys in self.examples.items() if keys},
        }

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("accepted deliveries", str(self.accepted)),
            ("delivered once", str(self[Category.DELIVERED_ONCE])),
            ("  of which redriven, then delivered", str(self.redriven_then_delivered)),
            ("failed permanently", str(self[Category.FAILED_PERMANENTLY])),
            ("outcome unconfirmed (not resent)", str(self[Category.OUTCOME_UNCONFIRMED])),
            ("dead-lettered (still)", str(self[Category.DEAD_LETTERED])),
            ("skipped, device inactive", str(self[Category.SKIPPED_INACTIVE])),
            ("delivered, status disagrees", str(self[Category.STATUS_DISAGREES])),
            ("LOST (must be 0)", str(self[Category.LOST])),
            ("SENT TWICE (must be 0)", str(self[Category.SENT_TWICE])),
            ("provider records matching no delivery", str(self.unplanned_provider_records)),
            ("provider calls", str(self.provider_calls)),
            ("provider calls per delivery", str(self.provider_calls_per_delivery)),
        ]


def build_ledger(outcomes: list[DeliveryOutcome], unplanned_provider_records: int, provider_calls: int) -> Ledger:
    """The ledger of a run: every accepted delivery in one category, plus the redrive and cost figures."""
    keys = [outcome.key for outcome in outcomes]
    duplicated = [key for key, seen in Counter(keys).items() if seen > 1]
    if duplicated:
        raise ValueError(f"one outcome per delivery, please; repeated: {duplicated[:EXAMPLES]}")
    categories = [(outcome, categorize(outcome)) for outcome in outcomes]
    examples: dict[Category, list[str]] = {}
    for outcome, category in categories:
        if category not in (Category.DELIVERED_ONCE, Category.FAILED_PERMANENTLY):
            bucket = examples.setdefault(category, [])
            if len(bucket) < EXAMPLES:
                bucket.append(f"{outcome.key} ({outcome.status}, {outcome.provider_records} at the provider)")
    return Ledger(
        accepted=len(outcomes),
        counts=dict(Counter(category for _, category in categories)),
        redriven=sum(outcome.redriven for outcome in outcomes),
        redriven_then_delivered=sum(
            outcome.redriven and category is Category.DELIVERED_ONCE for outcome, category in categories
        ),
        unplanned_provider_records=unplanned_provider_records,
        provider_calls=provider_calls,
        examples=examples,
    )
