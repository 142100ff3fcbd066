"""The device registry in DynamoDB: which devices each user has, keyed (user_id, device_id)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from herald.models.domain import Device, now


class DynamoDeviceRegistry:
    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def put(self, device: Device) -> None:
        self._dynamodb.put_item(TableName=self._table, Item=_to_item(device))

    def get(self, user_id: str, device_id: str) -> Device | None:
        response = self._dynamodb.get_item(
            TableName=self._table,
            Key={"user_id": {"S": user_id}, "device_id": {"S": device_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _from_item(item) if item else None

    def delete(self, user_id: str, device_id: str) -> bool:
        response = self._dynamodb.delete_item(
            TableName=self._table,
            Key={"user_id": {"S": user_id}, "device_id": {"S": device_id}},
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in response

    def mark_inactive(self, user_id: str, device_id: str, endpoint_arn: str, reason: str) -> bool:
        """Marks the device inactive if it still has this endpoint (a new registration since wins)."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"user_id": {"S": user_id}, "device_id": {"S": device_id}},
                UpdateExpression="SET active = :f, inactive_reason = :r, inactive_since = :t",
                ConditionExpression="endpoint_arn = :arn",
                ExpressionAttributeValues={
                    ":f": {"S": "False"},
                    ":r": {"S": reason[:500]},
                    ":t": {"S": now().isoformat()},
                    ":arn": {"S": endpoint_arn},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

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

    def devices_of(self, user_id: str) -> Iterator[Device]:
        paginator = self._dynamodb.get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield _from_item(item)


def _to_item(device: Device) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, value in device.model_dump(mode="json").items():
        if value is not None:
            item[name] = {"S": str(value)}
    return item


def _from_item(item: dict[str, Any]) -> Device:
    return Device.model_validate({name: value["S"] for name, value in item.items() if "S" in value})
