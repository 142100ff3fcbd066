"""The device registry in DynamoDB: which devices each user has, keyed (user_id, device_id).

Two indexes find devices by what a provider knows them by: `ByEndpoint` (a push device's SNS
platform endpoint) and `ByContact` ("email:<address>", "sms:<number>"). Each push endpoint also
has a holder item, keyed ("endpoint#<arn>", "holder"): the one device the token belongs to now.
Ids never hold '#', so no user's partition is ever one of these.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from herald.models.domain import Channel, Device, DeviceKey, now

BY_ENDPOINT = "ByEndpoint"
BY_CONTACT = "ByContact"
HOLDER_PREFIX = "endpoint#"
HOLDER_SK = "holder"
MAX_REASON = 500


def contact_of(channel: Channel, address: str) -> str:
    """How a provider names an email or SMS device: SES reports addresses in any case, so emails are lowered."""
    return f"{channel.value}:{address.lower() if channel is Channel.EMAIL else address}"


class DynamoDeviceRegistry:
    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def put(self, device: Device) -> None:
        self._dynamodb.put_item(TableName=self._table, Item=_to_item(device))

    def get(self, user_id: str, device_id: str) -> Device | None:
        response = self._dynamodb.get_item(TableName=self._table, Key=_key(user_id, device_id), ConsistentRead=True)
        item = response.get("Item")
        return _from_item(item) if item else None

    def delete(self, user_id: str, device_id: str) -> bool:
        response = self._dynamodb.delete_item(
            TableName=self._table, Key=_key(user_id, device_id), ReturnValues="ALL_OLD"
        )
        return "Attributes" in response

    def mark_inactive(
        self, user_id: str, device_id: str, reason: str, endpoint_arn: str | None = None, address: str | None = None
    ) -> bool:
        """Marks the device inactive if it still has this endpoint or address (a new registration since wins)."""
        held = [("endpoint_arn", endpoint_arn), ("address", address)]
        conditions = [f"{name} = :{name}" for name, value in held if value is not None]
        if not conditions:
            raise ValueError("mark_inactive needs the endpoint or the address the device must still have")
        return self._update_if(
            _key(user_id, device_id),
            update="SET active = :f, inactive_reason = :r, inactive_since = :t",
            condition=" AND ".join(conditions),
            values={
                ":f": {"S": "False"},
                ":r": {"S": reason[:MAX_REASON]},
                ":t": {"S": now().isoformat()},
                **{f":{name}": {"S": value} for name, value in held if value is not None},
            },
        )

    def devices_of(self, user_id: str) -> Iterator[Device]:
        for item in self._query(
            KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": {"S": user_id}}
        ):
            yield _from_item(item)

    def devices_after(self, user_id: str, after: str | None, limit: int) -> tuple[list[Device], bool]:
        """One query (more only past DynamoDB's 1 MB a response) for one device past `limit`, to tell whether
        more follow without another page finding none."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}},
        }
        if after is not None:
            query["ExclusiveStartKey"] = {"user_id": {"S": user_id}, "device_id": {"S": after}}
        devices: list[Device] = []
        while len(devices) <= limit:
            response = self._dynamodb.query(**query, Limit=limit + 1 - len(devices))
            devices += [_from_item(item) for item in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return devices[:limit], len(devices) > limit

    def devices_with_endpoint(self, endpoint_arn: str) -> list[DeviceKey]:
        """Devices pointing at this platform endpoint (the index is eventually consistent)."""
        return self._keys(BY_ENDPOINT, "endpoint_arn", endpoint_arn)

    def devices_with_contact(self, channel: Channel, address: str) -> list[DeviceKey]:
        """Email or SMS devices with this address, whoever registered them (the index is eventually consistent)."""
        return self._keys(BY_CONTACT, "contact", contact_of(channel, address))

    # ------------------------------------------------------------ who holds a push endpoint

    def take_endpoint(self, endpoint_arn: str, device: DeviceKey) -> DeviceKey | None:
        """Makes `device` the endpoint's holder; returns the one it replaced, if any. Atomic: of two
        registrations of one token, the one whose swap comes second learns about the first."""
        response = self._dynamodb.update_item(
            TableName=self._table,
            Key=_holder_key(endpoint_arn),
            UpdateExpression="SET holder_user_id = :u, holder_device_id = :d, taken_at = :t",
            ExpressionAttributeValues={
                ":u": {"S": device.user_id},
                ":d": {"S": device.device_id},
                ":t": {"S": now().isoformat()},
            },
            ReturnValues="ALL_OLD",
        )
        old = response.get("Attributes") or {}
        if "holder_user_id" not in old:
            return None
        return DeviceKey(old["holder_user_id"]["S"], old["holder_device_id"]["S"])

    def release_endpoint(self, endpoint_arn: str, device: DeviceKey) -> bool:
        """Forgets the endpoint's holder if it is `device` (or nobody): False if another device holds it now."""
        try:
            self._dynamodb.delete_item(
                TableName=self._table,
                Key=_holder_key(endpoint_arn),
                ConditionExpression=(
                    "attribute_not_exists(holder_user_id) OR (holder_user_id = :u AND holder_device_id = :d)"
                ),
                ExpressionAttributeValues={":u": {"S": device.user_id}, ":d": {"S": device.device_id}},
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def move_off_endpoint(self, endpoint_arn: str, device: DeviceKey, reason: str) -> bool:
        """Deactivates `device` and takes the endpoint off it, unless it is the endpoint's holder (checked in
        the same transaction) or no longer points at that endpoint. True if it was moved off."""
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": _holder_key(endpoint_arn),
                            "ConditionExpression": "NOT (holder_user_id = :u AND holder_device_id = :d)",
                            "ExpressionAttributeValues": {
                                ":u": {"S": device.user_id},
                                ":d": {"S": device.device_id},
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _key(*device),
                            "UpdateExpression": (
                                "SET active = :f, inactive_reason = :r, inactive_since = :t REMOVE endpoint_arn"
                            ),
                            "ConditionExpression": "endpoint_arn = :arn",
                            "ExpressionAttributeValues": {
                                ":f": {"S": "False"},
                                ":r": {"S": reason[:MAX_REASON]},
                                ":t": {"S": now().isoformat()},
                                ":arn": {"S": endpoint_arn},
                            },
                        }
                    },
                ]
            )
        except ClientError as error:
            if _code(error) == "TransactionCanceledException":
                return False  # it holds the endpoint, or points elsewhere by now
            raise
        return True

    # ------------------------------------------------------------ reads and conditional writes

    def _update_if(self, key: dict[str, Any], update: str, condition: str, values: dict[str, Any]) -> bool:
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _query(self, **request: Any) -> Iterator[dict[str, Any]]:
        paginator = self._dynamodb.get_paginator("query")
        for page in paginator.paginate(TableName=self._table, **request):
            yield from page.get("Items", [])

    def _keys(self, index: str, attribute: str, value: str) -> list[DeviceKey]:
        items = self._query(
            IndexName=index,
            KeyConditionExpression="#a = :v",
            ExpressionAttributeNames={"#a": attribute},
            ExpressionAttributeValues={":v": {"S": value}},
        )
        return [DeviceKey(item["user_id"]["S"], item["device_id"]["S"]) for item in items]


def _key(user_id: str, device_id: str) -> dict[str, Any]:
    return {"user_id": {"S": user_id}, "device_id": {"S": device_id}}


def _holder_key(endpoint_arn: str) -> dict[str, Any]:
    return _key(HOLDER_PREFIX + endpoint_arn, HOLDER_SK)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _to_item(device: Device) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, value in device.model_dump(mode="json").items():
        if value is not None:
            item[name] = {"S": str(value)}
    # Only email and SMS: a push token may be longer than an index key can be (2,048 bytes).
    if device.address and device.channel in (Channel.EMAIL, Channel.SMS):
        item["contact"] = {"S": contact_of(device.channel, device.address)}
    return item


def _from_item(item: dict[str, Any]) -> Device:
    return Device.model_validate({name: value["S"] for name, value in item.items() if "S" in value})
