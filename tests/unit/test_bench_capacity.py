"""The billing-unit rules: DynamoDB item sizes and capacity units, SQS and SNS requests per 64 KB chunk."""

from __future__ import annotations

import pytest

from bench.capacity import (
    billed_requests,
    chunks,
    item_size,
    number_size,
    read_units,
    read_units_of,
    value_size,
    write_units,
)


@pytest.mark.parametrize(
    ("number", "size"),
    # 1764504000000 has 7 significant digits (trailing zeros trimmed): 4 + 1 bytes
    [("0", 1), ("7", 2), ("12", 2), ("123", 3), ("1764504000000", 5), ("-0.0012300", 3), ("1.5e10", 2)],
)
def test_a_number_takes_a_byte_per_two_significant_digits_plus_one(number: str, size: int):
    assert number_size(number) == size


def test_item_size_adds_names_and_values_by_type():
    # Given an item of each kind of attribute
    item = {
        "id": {"S": "héllo"},  # 2 + 6 (é is two UTF-8 bytes)
        "n": {"N": "12345"},  # 1 + 4
        "b": {"B": b"\x00\x01\x02"},  # 1 + 3 raw bytes
        "ok": {"BOOL": True},  # 2 + 1
        "none": {"NULL": True},  # 4 + 1
        "l": {"L": [{"S": "ab"}, {"N": "1"}]},  # 1 + 3 + (1 + 2) + (1 + 2)
        "m": {"M": {"k": {"S": "v"}}},  # 1 + 3 + (1 + 1 + 1)
        "ss": {"SS": ["a", "bc"]},  # 2 + 3
    }

    # Then each follows DynamoDB's documented rule
    assert item_size(item) == 8 + 5 + 4 + 3 + 5 + 10 + 7 + 5


def test_base64_binary_counts_its_raw_bytes():
    assert value_size({"B": "AAEC"}) == 3


def test_no_item_has_no_size():
    assert item_size(None) == 0
    assert item_size({}) == 0


@pytest.mark.parametrize(
    ("sizes", "units"),
    [((0,), 1), ((1,), 1), ((1024,), 1), ((1025,), 2), ((300, 2100), 3), ((2100, 300), 3), ((), 1)],
)
def test_a_write_bills_a_unit_per_kb_of_the_larger_image_at_least_one(sizes: tuple[int, ...], units: int):
    assert write_units(*sizes) == units


@pytest.mark.parametrize(
    ("size", "consistent", "units"),
    [(0, False, 0.5), (4096, False, 0.5), (4097, False, 1.0), (4097, True, 2), (100, True, 1)],
)
def test_a_read_bills_per_4_kb_half_when_eventually_consistent(size: int, consistent: bool, units: float):
    assert read_units(size, consistent) == units


def test_a_query_bills_its_items_together_and_a_get_its_item():
    # Given a query page of three 1.5 KB items, eventually consistent
    item = {"k": {"S": "x" * 1535}}  # 1 + 1535 = 1536 bytes
    page = {"Items": [item, item, item]}

    # Then 4,608 bytes read bill as two 4 KB units, halved; a consistent get of one as one unit
    assert read_units_of("Query", {}, page) == 1.0
    assert read_units_of("GetItem", {"ConsistentRead": True}, {"Item": item}) == 1
    assert read_units_of("GetItem", {}, {}) == 0.5  # nothing found still costs the minimum


def test_a_batch_get_bills_each_key_as_a_get_the_keys_with_no_item_included():
    # Given a BatchGetItem of 3 preferences (one found, 5 KB), and 2 keys a retry will read again
    keys = [{"user_id": {"S": user}} for user in ("ada", "bob", "cy", "di", "ed")]
    params = {"RequestItems": {"P": {"Keys": keys}}}
    parsed = {
        "Responses": {"P": [{"user_id": {"S": "ada"}, "x": {"S": "x" * 5000}}]},
        "UnprocessedKeys": {"P": {"Keys": keys[3:]}},
    }

    # Then the found item bills 1 unit (2 x 4 KB, halved), the 2 keys with no item half a unit each
    assert read_units_of("BatchGetItem", params, parsed) == 2.0


@pytest.mark.parametrize(("size", "requests"), [(0, 1), (65536, 1), (65537, 2), (262144, 4)])
def test_sqs_and_sns_bill_a_request_per_64_kb_chunk(size: int, requests: int):
    assert chunks(size) == requests


def test_a_publish_batch_bills_its_entries_aggregate_payload():
    # Given ten 7 KB entries (70 KB together) and ten small ones
    big = [{"Id": str(i), "Message": "x" * 7000} for i in range(10)]
    small = [{"Id": str(i), "Message": "x" * 500} for i in range(10)]

    # Then the big batch bills as two requests, the small one as one: not one per entry
    assert billed_requests("sns", "PublishBatch", {"PublishBatchRequestEntries": big}, {}) == 2
    assert billed_requests("sns", "PublishBatch", {"PublishBatchRequestEntries": small}, {}) == 1


def test_message_attributes_count_toward_an_sqs_message():
    # Given a 65,530-byte body and a 10-byte attribute ("priority" + "String" + "normal")
    params = {
        "MessageBody": "x" * 65530,
        "MessageAttributes": {"priority": {"DataType": "String", "StringValue": "normal"}},
    }

    # Then the send crosses 64 KB: two requests
    assert billed_requests("sqs", "SendMessage", params, {}) == 2


def test_a_receive_bills_what_it_returned():
    messages = [{"Body": "x" * 40000}, {"Body": "y" * 40000}]
    assert billed_requests("sqs", "ReceiveMessage", {}, {"Messages": messages}) == 2
    assert billed_requests("sqs", "ReceiveMessage", {}, {}) == 1  # an empty receive is a request too
    assert billed_requests("sqs", "DeleteMessageBatch", {"Entries": [{}]}, {}) == 1
