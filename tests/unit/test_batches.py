"""send_in_batches: the one way Herald calls SendMessageBatch, PublishBatch and BatchWriteItem."""

from __future__ import annotations

from typing import Any

import pytest

from herald.adapters.batches import BatchEntryFailed, send_in_batches


class FakeBatchApi:
    """A batch API that accepts every entry except those whose Id is in `refuse`."""

    def __init__(self, refuse: set[str] = frozenset()):
        self.refuse = refuse
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(entries)
        return {
            "Successful": [{"Id": e["Id"]} for e in entries if e["Id"] not in self.refuse],
            "Failed": [
                {"Id": e["Id"], "Code": "InternalError", "Message": "try again", "SenderFault": False}
                for e in entries
                if e["Id"] in self.refuse
            ],
        }


def entries(count: int) -> list[dict[str, Any]]:
    return [{"Id": str(n), "MessageBody": f"message {n}"} for n in range(count)]


def test_entries_go_in_chunks_of_ten_in_order():
    # Given 25 entries
    api = FakeBatchApi()

    # When they are sent
    accepted = send_in_batches(entries(25), api)

    # Then three calls carry 10, 10 and 5 of them, in order, and all are counted accepted
    assert [len(call) for call in api.calls] == [10, 10, 5]
    assert [e["Id"] for call in api.calls for e in call] == [str(n) for n in range(25)]
    assert accepted == 25


def test_chunk_size_can_be_set_for_apis_with_a_larger_limit():
    # Given 60 entries for BatchWriteItem, which takes 25
    api = FakeBatchApi()

    # When they are sent in chunks of 25
    send_in_batches(entries(60), api, size=25)

    # Then the chunks follow that size
    assert [len(call) for call in api.calls] == [25, 25, 10]


def test_no_entries_make_no_call():
    # Given nothing to send
    api = FakeBatchApi()

    # When it is sent
    accepted = send_in_batches([], api)

    # Then the API is not called
    assert api.calls == []
    assert accepted == 0


def test_a_failed_entry_raises_after_every_chunk_was_attempted():
    # Given an API refusing one entry of the first chunk and one of the last
    api = FakeBatchApi(refuse={"3", "21"})

    # When 25 entries are sent
    with pytest.raises(BatchEntryFailed) as raised:
        send_in_batches(entries(25), api)

    # Then every chunk was still tried, and the error lists both refused entries
    assert len(api.calls) == 3
    assert [entry["Id"] for entry in raised.value.failed] == ["3", "21"]
    assert "2 batch entries failed (3, 21)" in str(raised.value)
    assert "try again" in str(raised.value)
