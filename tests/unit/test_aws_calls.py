"""The code scan the IAM tests rely on, on a small made-up code base whose calls are known."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.aws_calls import read_code

STORES = """
    from typing import Any, Protocol


    class QueueClient(Protocol):  # the slice of boto3's SQS client the code uses, typed
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> Any: ...


    class Orders(Protocol):
        def add(self, order: str) -> None: ...
        def get(self, order: str) -> str | None: ...


    class DynamoOrders:
        def __init__(self, dynamodb: Any, table: str):
            self._dynamodb = dynamodb
            self._table = table

        def add(self, order: str) -> None:
            self._dynamodb.put_item(TableName=self._table, Item={"id": {"S": order}})

        def get(self, order: str) -> str | None:
            return self._lookup(order)

        def _lookup(self, order: str) -> str | None:
            pages = self._dynamodb.get_paginator("query").paginate(TableName=self._table)
            return next(iter(pages), None)

        def forget(self, order: str) -> None:
            self._dynamodb.delete_item(TableName=self._table, Key={"id": {"S": order}})
"""
LOGIC = """
    from shop.stores import Orders


    def place(orders: Orders, order: str) -> None:
        orders.add(order)


    def look(orders: Orders, order: str) -> str | None:
        return orders.get(order)
"""
SETTINGS = """
    class Settings:
        orders_table: str = ""
        archive_table: str = ""
"""
CHECKOUT = """
    from typing import Any

    from shop.logic import place
    from shop.settings import Settings
    from shop.stores import DynamoOrders


    def handler(event: dict[str, Any], dynamodb: Any) -> None:
        settings = Settings()
        place(DynamoOrders(dynamodb, settings.orders_table), event["order"])
"""
LOOKUP = """
    from typing import Any

    from shop.logic import look
    from shop.settings import Settings
    from shop.stores import DynamoOrders, QueueClient


    def handler(event: dict[str, Any], dynamodb: Any, sqs: QueueClient) -> None:
        settings = Settings()
        found = look(DynamoOrders(dynamodb, settings.archive_table), event["order"])
        sqs.send_message_batch(QueueUrl="q", Entries=[{"Id": "1", "MessageBody": str(found)}])
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/stores.py": STORES,
            "shop/logic.py": LOGIC,
            "shop/settings.py": SETTINGS,
            "checkout/__init__.py": "",
            "checkout/app.py": CHECKOUT,
            "lookup/__init__.py": "",
            "lookup/app.py": LOOKUP,
        },
    )


def test_a_handler_reaches_only_the_store_methods_its_logic_calls_through_a_protocol(shop: Path) -> None:
    # Given two handlers sharing one store class, each calling one method of it through a Protocol
    code = read_code(shop)

    # When each handler's calls are read
    checkout, lookup = code.handler("checkout.app"), code.handler("lookup.app")

    # Then each gets its own method's action on the table it built the store with; forget() is no one's
    assert checkout.dynamodb_actions() == {"ORDERS_TABLE": {"dynamodb:PutItem"}}
    assert lookup.dynamodb_actions() == {"ARCHIVE_TABLE": {"dynamodb:Query"}}  # a paginator, via _lookup
    assert checkout.actions("sqs") == set()
    # And a client typed by a Protocol of the code is still a client; a batch is authorised per entry
    assert lookup.actions("sqs") == {"sqs:SendMessage"}
    assert code.unaccounted(shop) == []


def test_a_client_call_the_scan_cannot_attribute_is_reported(shop: Path) -> None:
    # Given a call through a client named after no service, and a DynamoDB call outside any store class
    write(
        shop,
        {
            "shop/purge.py": """
                from typing import Any


                def purge(client: Any, dynamodb: Any) -> None:
                    client.delete_message(QueueUrl="q", ReceiptHandle="r")
                    dynamodb.delete_item(TableName="t", Key={})
            """,
            "checkout/app.py": textwrap.dedent(CHECKOUT)
            + "\n\ndef clean(client: Any) -> None:\n    from shop.purge import purge\n\n    purge(client, client)\n",
        },
    )
    code = read_code(shop)

    # Then the text check names the hidden call, and the table of the bare DynamoDB call is refused as unknown
    assert [(path, operation) for path, _, operation in code.unaccounted(shop)] == [("shop/purge.py", "delete_message")]
    with pytest.raises(ValueError, match="delete_item"):
        code.handler("checkout.app").dynamodb_actions()


def test_a_protocol_call_reaches_only_the_implementations_the_handler_builds(shop: Path) -> None:
    # Given a second class that fits the Orders Protocol as well, built by no handler, and one whose base the
    # scan cannot see (an unresolved import reads as Any, as pydantic's BaseModel does: such a class fits any type)
    write(
        shop,
        {
            "shop/archive.py": """
                from typing import Any

                from unseen import Base


                class Record(Base):
                    pass


                class DynamoArchive:
                    def __init__(self, dynamodb: Any, table: str):
                        self._dynamodb = dynamodb
                        self._table = table

                    def add(self, order: str) -> None:
                        self._dynamodb.delete_item(TableName=self._table, Key={"id": {"S": order}})

                    def get(self, order: str) -> Record | None:
                        self._dynamodb.scan(TableName=self._table)
                        return None
            """,
            "checkout/app.py": textwrap.dedent(CHECKOUT) + "\n\nimport shop.archive  # noqa: F401,E402\n",
        },
    )
    code = read_code(shop)

    # When the checkout handler's calls are read (it imports the archive's module, never builds one)
    checkout = code.handler("checkout.app")

    # Then Orders.add reaches DynamoOrders.add alone: the archive's calls are no one's, and no table is unknown
    assert checkout.dynamodb_actions() == {"ORDERS_TABLE": {"dynamodb:PutItem"}}


PAGES = """
    from typing import Any


    def newest_first(dynamodb: Any, table: str, user: str) -> list[Any]:
        query: dict[str, Any] = {"TableName": table, "KeyConditionExpression": "u = :u", "ScanIndexForward": False}
        return list(dynamodb.query(**query)["Items"])


    def count(dynamodb: Any, table: str) -> int:
        return int(dynamodb.scan(TableName=table, Select="COUNT")["Count"])


    def tally(dynamodb: Any, orders_table: str) -> int:
        return count(dynamodb, orders_table)
"""
REVIEWS = """
    from typing import Any

    from shop.pages import newest_first


    class DynamoReviews:
        def __init__(self, dynamodb: Any, table: str):
            self._dynamodb = dynamodb
            self._table = table

        def page(self, user: str) -> list[Any]:
            return newest_first(self._dynamodb, self._table, user)
"""
REVIEWING = """
    from typing import Any

    from shop.pages import count, tally
    from shop.reviews import DynamoReviews
    from shop.settings import Settings


    def handler(event: dict[str, Any], dynamodb: Any) -> int:
        settings = Settings()
        reviews = DynamoReviews(dynamodb, settings.reviews_table)
        archived = count(dynamodb, settings.archive_table)
        return len(reviews.page(event["user"])) + archived + tally(dynamodb, orders_table=settings.orders_table)
"""


def test_a_module_function_hits_the_tables_its_reached_callers_pass_it(shop: Path) -> None:
    # Given a paged query and a count written once as module functions, each taking its table as an argument:
    # the query called by a store method with the store's own table, the count by the handler with a settings
    # field, and through a function that passes its own parameter on (by keyword)
    write(
        shop,
        {
            "shop/settings.py": textwrap.dedent(SETTINGS) + '    reviews_table: str = ""\n',
            "shop/pages.py": PAGES,
            "shop/reviews.py": REVIEWS,
            "reviewing/__init__.py": "",
            "reviewing/app.py": REVIEWING,
        },
    )
    code = read_code(shop)

    # When each handler's calls are read
    reviewing, checkout = code.handler("reviewing.app"), code.handler("checkout.app")

    # Then the query hits the table the store was built with, the count each table passed to it, followed through
    assert reviewing.dynamodb_actions() == {
        "REVIEWS_TABLE": {"dynamodb:Query"},
        "ARCHIVE_TABLE": {"dynamodb:Scan"},
        "ORDERS_TABLE": {"dynamodb:Scan"},
    }
    # And a handler that reaches none of those functions gets none of their calls
    assert checkout.dynamodb_actions() == {"ORDERS_TABLE": {"dynamodb:PutItem"}}
    assert code.unaccounted(shop) == []


@pytest.mark.parametrize(
    ("argument", "why"),
    [
        ('"orders-2026"', "cannot tell at reviewing/app.py:"),  # a literal names no table of the template
        ("event['table']", "cannot tell at reviewing/app.py:"),  # nor does a value computed at run time
    ],
)
def test_a_table_argument_the_scan_cannot_tell_is_refused(shop: Path, argument: str, why: str) -> None:
    # Given the count called with a table the template cannot have named
    handler = """
        from typing import Any

        from shop.pages import count


        def handler(event: dict[str, Any], dynamodb: Any) -> int:
            return count(dynamodb, ARGUMENT)
    """.replace("ARGUMENT", argument)
    write(shop, {"shop/pages.py": PAGES, "reviewing/__init__.py": "", "reviewing/app.py": handler})

    # When its calls are read, Then its DynamoDB actions are refused, naming the call site
    with pytest.raises(ValueError, match=why):
        read_code(shop).handler("reviewing.app").dynamodb_actions()
