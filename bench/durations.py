"""How long a Lambda invocation is billed for, from what it did: a stated model, never the laptop's clock.

An invocation's duration is its CPU work, stretched by the memory it is given, plus the time it
waits for AWS to answer:

    duration = (invocation + records x record + calls x call) CPU ms x max(1, 1769 MB / memory)
               + sum of its calls' waits / lanes

- CPU ms are at one full vCPU. Lambda gives a function CPU in proportion to its memory, one vCPU
  at 1,769 MB: at 256 MB a millisecond of CPU takes 6.9 ms. The three CPU constants were measured
  once on the development machine (thread CPU time inside the handlers on the local stack,
  2026-11-30, Python 3.11, botocore 1.44) and rounded: the handler's own work per invocation
  (Powertools' context, the batch loop, the answer) about 1.5 ms plus the runtime's 0.5 ms, a
  record's parse and logic about 1 ms, a botocore call (build, sign, send, parse) about 1 ms.
- A call's wait is the service's answer time seen from a function in the same region, by service
  and, for providers, by channel: typical published figures, assumed, not measured here
  (DynamoDB single-digit milliseconds; SQS and SNS a little more; a provider call the most).
- lanes: a deliver invocation calls the providers of its records concurrently (`ParallelSends`),
  so their waits overlap: divided by min(records, the function's parallel sends). CPU does not
  overlap (one interpreter, a fraction of a vCPU).

Lambda bills each invocation's duration rounded up to the millisecond, times its memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

ONE_VCPU_MB = 1769

# What a call waits for, in ms, by (service, resource): see the module's docstring. A resource without a
# figure of its own (a table, the topic, a queue) waits as its service's default ("").
WAIT_MS: dict[tuple[str, str], float] = {
    ("dynamodb", ""): 5.0,
    ("sqs", ""): 8.0,
    ("sns", ""): 15.0,  # PublishBatch to the topic
    ("sns", "endpoint"): 30.0,  # a push provider call: SNS to APNs / FCM
    ("sns", "phone"): 40.0,  # an SMS
    ("ses", ""): 50.0,  # an email
}


@dataclass(frozen=True)
class Work:
    """What one invocation did: its records and its AWS calls."""

    function: str  # the template's logical id
    records: int  # SQS records in its event; 0 for an API request
    calls: Mapping[tuple[str, str, str], int]  # (service, operation, resource as bench.calls names it)
    lanes: int = 1  # records whose calls may overlap (the function's parallel sends)


@dataclass(frozen=True)
class DurationModel:
    invocation_cpu_ms: float = 2.0
    record_cpu_ms: float = 1.0
    call_cpu_ms: float = 1.0
    wait_ms: Mapping[tuple[str, str], float] = field(default_factory=lambda: dict(WAIT_MS))

    def wait_of(self, service: str, resource: str) -> float:
        """A call's wait in ms."""
        return self.wait_ms.get((service, resource), self.wait_ms.get((service, ""), 0.0))

    def cpu_ms(self, work: Work) -> float:
        calls = sum(work.calls.values())
        return self.invocation_cpu_ms + work.records * self.record_cpu_ms + calls * self.call_cpu_ms

    def waits_ms(self, work: Work) -> float:
        total = sum(self.wait_of(service, resource) * n for (service, _, resource), n in work.calls.items())
        return total / max(1, min(work.lanes, max(work.records, 1)))

    def duration_ms(self, work: Work, memory_mb: int) -> float:
        return self.cpu_ms(work) * cpu_stretch(memory_mb) + self.waits_ms(work)

    def billed_ms(self, work: Work, memory_mb: int) -> int:
        """Lambda rounds each invocation up to the millisecond."""
        return math.ceil(round(self.duration_ms(work, memory_mb), 6))


def cpu_stretch(memory_mb: int) -> float:
    """How much longer a millisecond of one vCPU's work takes at this memory size."""
    return max(1.0, ONE_VCPU_MB / memory_mb)


def gb_seconds(billed_ms: float, memory_mb: int) -> float:
    return billed_ms / 1000 * memory_mb / 1024


MODEL = DurationModel()
