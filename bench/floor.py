"""The floor: the fewest AWS calls a design allows per notification, line by line.

A design is a list of lines. Each line names the counted calls it covers and how many it needs:
per notification, per recipient, per delivery, per chunk of a notification's deliveries (a batch
API), or per message its event source mapping hands out (a receive and a delete carry up to
min(batch size, 10) messages, so they are amortised over full batches). To recompute the floor for
a new design, write its lines as `CURRENT` is written and pass it to `floor_per_notification` and
`line_of`; the requests benchmark compares what it counts with it (at most 1.1x).

CURRENT, Herald as built: a notification to R recipients with D devices each makes n = R x D
deliveries in m = R x ceil(D / 10) queue messages (a recipient's devices of one channel travel together,
up to 10 a message: herald.models.domain.GROUP_DEVICES), and costs

  api       1 intake SendMessage, 1 status PutItem (accepted)
  fanout    R device Query pages (one page per recipient), ceil(m / 10) SNS PublishBatch (m / 10 when
            m < 10: the small pages of a fan-out batch publish together, over full intake batches), 1 status
            UpdateItem (the fan-out page's one record, before it publishes, which a cancel races; it also
            records the planned deliveries, so no delivery needs an item of its own before it is claimed; a
            planned list over 1 KB goes to a PutItem of its own, one more call not counted in the floor), ceil(R / 100)
            preferences BatchGetItem and ceil(R / 25) history BatchWriteItem for several recipients (one
            recipient's entry is the page's record: docs/preferences.md, docs/inbox.md)
  deliver   per delivery: 1 provider call; 2 status UpdateItem (the claim, then the outcome) per group,
            a group being one recipient's deliveries within one deliver batch (grouped status writes):
            a message is never cut by a batch, so ceil(D / min(10, sends at once)) per recipient
            (`recipient_groups`)
  mapping   per message: the intake's and the priority queue's ReceiveMessage and DeleteMessageBatch,
            each carrying up to min(batch size, 10) messages (intake: 1 message per notification;
            the priority queue: m)

The status store's two writes per group are the reliability design's (claim before the provider
calls, outcome after): one conditional write serves as both the claim and the attempt count. An
in-app delivery's first try makes neither (its inbox item is its record, docs/reliability.md); the
requests benchmark's devices are push devices, whose every delivery is claimed and recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase

from herald.models.domain import GROUP_DEVICES

# SQS hands out and deletes at most 10 messages per call, whatever the mapping's batch size.
SQS_MESSAGES_PER_CALL = 10
PUBLISH_BATCH_ENTRIES = 10

API_INTAKE_SEND = "api: intake SendMessage"
API_STATUS_ACCEPTED = "api: status PutItem (accepted)"
FANOUT_DEVICE_QUERY = "fanout: devices Query"
FANOUT_PUBLISH = "fanout: SNS PublishBatch"
FANOUT_STATUS = "fanout: status write (the page's one record)"
FANOUT_PREFERENCES = "fanout: preferences BatchGetItem"
FANOUT_HISTORY = "fanout: history BatchWriteItem"
PREFERENCES_PER_READ = 100  # BatchGetItem's keys
HISTORY_PER_WRITE = 25  # BatchWriteItem's items
DELIVER_PROVIDER = "deliver: provider call"
DELIVER_STATUS = "deliver: status writes"
INTAKE_RECEIVE = "mapping: intake ReceiveMessage"
INTAKE_DELETE = "mapping: intake DeleteMessageBatch"
PRIORITY_RECEIVE = "mapping: priority ReceiveMessage"
PRIORITY_DELETE = "mapping: priority DeleteMessageBatch"
OTHER = "other"


@dataclass(frozen=True)
class Shape:
    """One notification: to `recipients` users with `devices` devices each."""

    recipients: int
    devices: int

    @property
    def deliveries(self) -> int:
        return self.recipients * self.devices

    @property
    def messages(self) -> int:
        """Priority queue messages: a recipient's devices (of one channel) travel together, GROUP_DEVICES a message."""
        return self.recipients * math.ceil(self.devices / GROUP_DEVICES)


@dataclass(frozen=True)
class Batching:
    """The event source mappings' batch sizes, from template.yaml; `sends`: the deliveries of one channel a
    deliver invocation sends at once (its ParallelSends and the channel's lane), which also cut a group
    (no delivery is claimed while it waits for a send slot); 0: as many as a batch holds."""

    intake: int
    priority: int
    sends: int = 0


INTAKE = "intake"
PRIORITY = "priority"


@dataclass(frozen=True)
class Line:
    """Calls of one kind a design needs per notification.

    `calls`: the counted calls it covers, as "origin function service operation resource" patterns
    (shell-style, first line that matches wins; a call with no function, the mapping's, shows "-").
    """

    name: str
    calls: tuple[str, ...]
    per_notification: float = 0.0
    per_recipient: float = 0.0
    per_delivery: float = 0.0
    per_deliveries_of: int = 0  # one call per this many deliveries of a notification, rounded up
    per_messages_of: int = 0  # one call per this many queue messages of a notification, rounded up
    per_recipients_of: int = 0  # one call per this many recipients of a notification, rounded up
    # ... but none for a notification to one recipient (its history entry rides its page's record)
    beyond_one_recipient: bool = False
    # A notification with fewer deliveries than one such call holds shares its calls with the others of its
    # intake batch (a fan-out batch's small pages publish together): n / per_deliveries_of, over full batches.
    shared_when_small: bool = False
    per_message_of: str = ""  # INTAKE or PRIORITY: one call per hand-out of that queue's messages
    # Calls per group of a recipient's deliveries that one deliver batch holds (recipient_groups: the fewest
    # there can be): grouped status writes, one claim and one outcome each.
    per_recipient_batch: float = 0.0

    def floor(self, shape: Shape, batching: Batching) -> float:
        n = shape.deliveries
        calls = self.per_notification + self.per_recipient * shape.recipients + self.per_delivery * n
        if self.per_deliveries_of and self.shared_when_small and n < self.per_deliveries_of:
            calls += n / self.per_deliveries_of
        elif self.per_deliveries_of:
            calls += math.ceil(n / self.per_deliveries_of)
        m = shape.messages
        if self.per_messages_of and self.shared_when_small and m < self.per_messages_of:
            calls += m / self.per_messages_of
        elif self.per_messages_of:
            calls += math.ceil(m / self.per_messages_of)
        if self.per_recipients_of and not (self.beyond_one_recipient and shape.recipients == 1):
            calls += math.ceil(shape.recipients / self.per_recipients_of)
        if self.per_recipient_batch:
            calls += self.per_recipient_batch * recipient_groups(shape, batching.priority, batching.sends)
        if self.per_message_of == INTAKE:
            calls += 1 / min(batching.intake, SQS_MESSAGES_PER_CALL)
        elif self.per_message_of == PRIORITY:
            calls += m / min(batching.priority, SQS_MESSAGES_PER_CALL)
        return calls

    def covers(self, call: str) -> bool:
        return any(fnmatchcase(call, pattern) for pattern in self.calls)


def recipient_groups(shape: Shape, batch: int, sends: int = 0) -> float:
    """The fewest groups (one recipient's deliveries within one deliver batch) a notification's deliveries
    make. A recipient's devices travel in messages of up to GROUP_DEVICES, which no batch cuts; a group holds
    at most `sends` deliveries (0: no such cut): 3 devices make one group, 100 devices with 10 sends at once
    ten. (`batch`, in messages, no longer cuts a recipient's deliveries; kept for the designs before groups.)"""
    largest = min(GROUP_DEVICES, sends) if sends > 0 else GROUP_DEVICES
    return float(shape.recipients * math.ceil(shape.devices / largest))


@dataclass(frozen=True)
class Design:
    name: str
    lines: tuple[Line, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(line.name for line in self.lines)


CURRENT = Design(
    "a claim and an outcome per recipient per batch, one write per page (a one-recipient notification's is its"
    " history entry), one message per recipient and channel, shared publishes (as built, 2026-12-01)",
    (
        Line(API_INTAKE_SEND, ("herald api sqs SendMessage *IntakeQueue",), per_notification=1),
        Line(API_STATUS_ACCEPTED, ("herald api dynamodb PutItem StatusTable",), per_notification=1),
        Line(FANOUT_DEVICE_QUERY, ("herald fanout dynamodb Query DevicesTable",), per_recipient=1),
        Line(
            FANOUT_PUBLISH,
            ("herald fanout sns PublishBatch *",),
            per_messages_of=PUBLISH_BATCH_ENTRIES,
            shared_when_small=True,
        ),
        Line(
            FANOUT_STATUS,
            (
                "herald fanout dynamodb UpdateItem StatusTable",
                "herald fanout dynamodb PutItem StatusTable",
                "herald fanout dynamodb UpdateItem HistoryTable",  # a one-recipient notification's page record
            ),
            per_notification=1,
        ),
        Line(
            FANOUT_PREFERENCES,
            ("herald fanout dynamodb BatchGetItem PreferencesTable",),
            per_recipients_of=PREFERENCES_PER_READ,
        ),
        Line(
            FANOUT_HISTORY,
            ("herald fanout dynamodb BatchWriteItem HistoryTable",),
            per_recipients_of=HISTORY_PER_WRITE,
            beyond_one_recipient=True,
        ),
        Line(
            DELIVER_PROVIDER,
            ("herald deliver sns Publish *", "herald deliver ses Send*", "herald deliver dynamodb PutItem InboxTable"),
            per_delivery=1,
        ),
        Line(
            DELIVER_STATUS,
            ("herald deliver dynamodb UpdateItem StatusTable", "herald deliver dynamodb PutItem StatusTable"),
            per_recipient_batch=2,
        ),
        Line(INTAKE_RECEIVE, ("poller - sqs ReceiveMessage *IntakeQueue",), per_message_of=INTAKE),
        Line(INTAKE_DELETE, ("poller - sqs DeleteMessageBatch *IntakeQueue",), per_message_of=INTAKE),
        Line(PRIORITY_RECEIVE, ("poller - sqs ReceiveMessage *",), per_message_of=PRIORITY),
        Line(PRIORITY_DELETE, ("poller - sqs DeleteMessageBatch *",), per_message_of=PRIORITY),
    ),
)
LINES = CURRENT.names


def floor_per_notification(shape: Shape, batching: Batching, design: Design = CURRENT) -> dict[str, float]:
    """The fewest calls per notification, by line (see the module's docstring)."""
    return {line.name: line.floor(shape, batching) for line in design.lines}


def floor_total(shape: Shape, batching: Batching, design: Design = CURRENT) -> float:
    return sum(floor_per_notification(shape, batching, design).values())


def line_of(origin: str, function: str, service: str, operation: str, role: str, design: Design = CURRENT) -> str:
    """Which line of the floor a counted call belongs to; OTHER when it has none (a retry's
    ChangeMessageVisibility, a read the floor does not need, the benchmark's own calls...)."""
    call = f"{origin} {function or '-'} {service} {operation} {role}"
    for line in design.lines:
        if line.covers(call):
            return line.name
    return OTHER
