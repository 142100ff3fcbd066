"""The one way Herald calls a batch API: in chunks, and any failed entry is a failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class BatchEntryFailed(Exception):
    """Some entries of a batch call were not accepted."""

    def __init__(self, failed: list[dict[str, Any]]):
        self.failed = failed
        ids = ", ".join(str(entry.get("Id")) for entry in failed)
        reasons = "; ".join(str(entry.get("Message") or entry.get("Code")) for entry in failed)
        super().__init__(f"{len(failed)} batch entries failed ({ids}): {reasons}")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def send_in_batches(
    entries: Sequence[dict[str, Any]],
    call: Callable[[list[dict[str, Any]]], dict[str, Any]],
    size: int = 10,
) -> int:
    """Calls `call` once per chunk of `size` entries (SQS SendMessageBatch, SNS PublishBatch).

    Every chunk is attempted; if any entry failed, raises BatchEntryFailed listing all of them.
    Returns how many entries were accepted.
    """
    failed: list[dict[str, Any]] = []
    accepted = 0
    for chunk in chunks(entries, size):
        response = call(list(chunk))
        failed.extend(response.get("Failed", []))
        accepted += len(response.get("Successful", []))
    if failed:
        raise BatchEntryFailed(failed)
    return accepted
