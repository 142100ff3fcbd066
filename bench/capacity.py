"""What AWS bills one call as: DynamoDB capacity units from item sizes, SQS and SNS requests from 64 KB chunks.

The rules, as AWS documents them (checked 2026-11):

- DynamoDB item size (Developer Guide, "Item sizes and formats"): the sum over attributes of the
  name's UTF-8 bytes plus the value's size. String: its UTF-8 bytes. Number: 1 byte per two
  significant digits, plus 1 (leading and trailing zeros trimmed). Binary: its raw bytes. Boolean and
  null: 1. List and map: 3 bytes, plus 1 byte and the size of each element (a map element's size
  counts its name).
- DynamoDB on-demand writes: 1 write unit per 1 KB of the item, rounded up per item; PutItem and
  UpdateItem are billed on the larger of the item before and after the write; a write refused by its
  condition is still billed. Reads: per 4 KB, rounded up, 1 unit strongly consistent, 0.5 eventually
  consistent; a Query on the total size of the items it returns (Herald's queries filter nothing, so
  returned is read), at least one unit.
- SQS: each 64 KB chunk of a request's payload is one request (a receive: of the messages returned).
- SNS: each 64 KB chunk of published data is one request; a PublishBatch on its entries' aggregate
  payload, so ten small messages in one batch bill as one request ("costs the same as a single
  Publish", the SNS batching documentation).

moto answers ReturnConsumedCapacity with a constant (1.0 for PutItem and Query, 0.5 for UpdateItem
and GetItem) whatever the item's size, so the counter computes units from the items themselves.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
REQUEST_CHUNK_BYTES = 65536

DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"})
DYNAMODB_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem"})


def number_size(text: str) -> int:
    """A DynamoDB number's size: 1 byte per two significant digits, plus 1."""
    digits = text.lstrip("+-").lower().split("e", 1)[0].replace(".", "").strip("0")
    return math.ceil(len(digits) / 2) + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    return len(base64.b64decode(value))


def value_size(value: Mapping[str, Any]) -> int:
    """The size of one attribute value in DynamoDB's JSON form ({"S": "..."}, {"N": "12"}, ...)."""
    ((kind, content),) = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return number_size(str(content))
    if kind == "B":
        return _binary_size(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(member).encode()) for member in content)
    if kind == "NS":
        return sum(number_size(str(member)) for member in content)
    if kind == "BS":
        return sum(_binary_size(member) for member in content)
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(element) for name, element in content.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """An item's size in bytes as DynamoDB bills it; 0 for no item."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(*sizes: int) -> int:
    """Write units of one item's write: the largest of its sizes (before, after), per 1 KB, at least 1."""
    return max(1, math.ceil(max(sizes, default=0) / WRITE_UNIT_BYTES))


def read_units(size: int, consistent: bool) -> float:
    """Read units of a read of `size` bytes (one item, or a Query page's items together)."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return units if consistent else units / 2


def chunks(payload_bytes: int) -> int:
    """Requests a payload bills as on SQS and SNS: one per 64 KB, at least one."""
    return max(1, math.ceil(payload_bytes / REQUEST_CHUNK_BYTES))


def attributes_size(attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Message attributes count toward a message's size: name, data type and value."""
    total = 0
    for name, attribute in (attributes or {}).items():
        total += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        if attribute.get("StringValue") is not None:
            total += len(str(attribute["StringValue"]).encode())
        if attribute.get("BinaryValue") is not None:
            total += _binary_size(attribute["BinaryValue"])
    return total


def message_size(body: str | None, attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    return len((body or "").encode()) + attributes_size(attributes)


def payload_bytes(service: str, operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> int:
    """The bytes of an SQS or SNS call that its price counts: what is sent, or for a receive what came back."""
    if service == "sqs":
        if operation == "SendMessage":
            return message_size(params.get("MessageBody"), params.get("MessageAttributes"))
        if operation == "SendMessageBatch":
            return sum(message_size(e.get("MessageBody"), e.get("MessageAttributes")) for e in params["Entries"])
        if operation == "ReceiveMessage":
            return sum(message_size(m.get("Body"), m.get("MessageAttributes")) for m in parsed.get("Messages", []))
        return 0
    if service == "sns":
        if operation == "Publish":
            return message_size(params.get("Message"), params.get("MessageAttributes")) + len(
                str(params.get("Subject") or "").encode()
            )
        if operation == "PublishBatch":
            return sum(
                message_size(e.get("Message"), e.get("MessageAttributes")) + len(str(e.get("Subject") or "").encode())
                for e in params["PublishBatchRequestEntries"]
            )
    return 0


def billed_requests(service: str, operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> int:
    """How many requests an SQS or SNS call bills as (1 for any call whose payload is under 64 KB)."""
    return chunks(payload_bytes(service, operation, params, parsed))


def read_units_of(operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> float:
    """Read units of a DynamoDB read, from the items it returned."""
    consistent = bool(params.get("ConsistentRead"))
    if operation == "GetItem":
        return read_units(item_size(parsed.get("Item")), consistent)
    if operation in ("Query", "Scan"):
        return read_units(sum(item_size(item) for item in parsed.get("Items", [])), consistent)
    if operation == "BatchGetItem":
        # Each key is read as a GetItem would be: a key with no item still bills the smallest read.
        units = 0.0
        unprocessed = parsed.get("UnprocessedKeys", {})
        for table, request in params.get("RequestItems", {}).items():
            table_consistent = bool(request.get("ConsistentRead"))
            items = parsed.get("Responses", {}).get(table, [])
            units += sum(read_units(item_size(item), table_consistent) for item in items)
            missing = len(request.get("Keys", [])) - len(items) - len(unprocessed.get(table, {}).get("Keys", []))
            units += max(0, missing) * read_units(0, table_consistent)
        return units
    return 0.0
