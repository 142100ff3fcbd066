"""The one way Herald calls a batch API: in chunks, and any failed entry is a failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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


def weighed_chunks(items: Sequence[T], size: int, weigh: Callable[[T], int], limit: int) -> Iterator[list[T]]:
    """Chunks of at most `size` items whose weights add up to at most `limit` (an item over it goes alone)."""
    chunk: list[T] = []
    total = 0
    for item in items:
        weight = weigh(item)
        if chunk and (len(chunk) >= size or total + weight > limit):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += weight
    if chunk:
        yield chunk


def _weightless(entry: object) -> int:
    return 0


def send_in_batches(
    entries: Sequence[T],
    call: Callable[[list[T]], dict[str, Any]],
    size: int = 10,
    parallel: int = 1,
    weigh: Callable[[T], int] | None = None,
    max_weight: int = 0,
) -> int:
    """Calls `call` once per chunk of `size` entries (SQS SendMessageBatch, SNS PublishBatch), at most
    `parallel` calls at once; with `weigh`, a chunk's entries also weigh at most `max_weight` together (a
    batch call's payload limit).

    Every chunk is attempted; if any entry failed, raises BatchEntryFailed listing all of them (an
    exception a call raises is raised once every chunk was attempted). Returns how many entries
    were accepted.
    """
    parts = list(weighed_chunks(entries, size, weigh or _weightless, max_weight))
    if parallel > 1 and len(parts) > 1:
        with ThreadPoolExecutor(max_workers=min(parallel, len(parts))) as pool:
            futures = [pool.submit(call, part) for part in parts]
            responses = [future.result() for future in futures]
    else:
        responses = [call(part) for part in parts]
    failed: list[dict[str, Any]] = []
    accepted = 0
    for response in responses:
        failed.extend(response.get("Failed", []))
        accepted += len(response.get("Successful", []))
    if failed:
        raise BatchEntryFailed(failed)
    return accepted
