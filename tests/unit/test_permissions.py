"""Each function's role grants what its code calls, and nothing more: read from the code, not from a list.

tests/aws_calls.py reads the calls each handler can reach; these tests hold them against the roles
template.yaml gives the functions, as SAM translates them.
"""

from __future__ import annotations

from typing import Any

import pytest

from herald_local.template import HeraldTemplate, references_in
from tests.aws_calls import CodeCalls, read_code


@pytest.fixture(scope="module")
def template() -> HeraldTemplate:
    return HeraldTemplate.load()


@pytest.fixture(scope="module")
def code() -> CodeCalls:
    return read_code()


def _branches(value: Any) -> list[Any]:
    """Both outcomes of a Fn::If (AWS::NoValue left out); the value itself otherwise."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        return [b for branch in value["Fn::If"][1:] for b in _branches(branch) if b != {"Ref": "AWS::NoValue"}]
    return [value]


def role_statements(template: HeraldTemplate, function: str) -> list[dict[str, Any]]:
    """Every statement of a function's role, from its inline policies and the template's managed policies
    it attaches, in any condition. AWS managed policies (logs, X-Ray, the SQS poller) are the platform's."""
    role = template.resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    props = template.resources[role]["Properties"]
    documents = [policy["PolicyDocument"] for entry in props.get("Policies", []) for policy in _branches(entry)]
    for arn in props.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and arn.get("Ref") in template.resources:
            documents.append(template.resources[arn["Ref"]]["Properties"]["PolicyDocument"])
    statements = []
    for document in documents:
        entries = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
        statements += [statement for entry in entries for statement in _branches(entry)]
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def granted_on_tables(template: HeraldTemplate, function: str) -> set[tuple[str, str]]:
    """(table, action) pairs the role allows; a DynamoDB grant on no table of the template counts as ("*", action)."""
    tables = {name for name, r in template.resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    granted = set()
    for statement in role_statements(template, function):
        if statement.get("Effect") != "Allow":
            continue
        for action in _actions(statement):
            if action.lower().startswith("dynamodb:"):
                named = references_in(statement.get("Resource")) & tables
                granted |= {(table, action) for table in named or {"*"}}
    return granted


def needed_on_tables(template: HeraldTemplate, code: CodeCalls, function: str) -> set[tuple[str, str]]:
    """(table, action) pairs the function's code performs, its tables found through its environment."""
    spec = template.functions[function]
    module = spec.handler.rsplit(".", 1)[0]
    needed = set()
    for variable, actions in code.handler(module).dynamodb_actions().items():
        reference = spec.environment.get(variable)
        assert isinstance(reference, dict) and "Ref" in reference, f"{function}: {variable} names no table"
        needed |= {(reference["Ref"], action) for action in actions}
    return needed


def test_each_function_may_do_on_each_table_exactly_what_its_code_does(
    template: HeraldTemplate, code: CodeCalls
) -> None:
    # Given every function of the template, its handler's reachable DynamoDB calls and its role
    assert set(template.functions) >= {"ApiFunction", "FanoutHighFunction", "DeliverHighFunction", "DlqRedriveFunction"}
    for function in template.functions:
        # When the (table, action) pairs the code performs are set against those the role allows
        needed = needed_on_tables(template, code, function)
        granted = granted_on_tables(template, function)

        # Then they are the same: no action the code never calls, none it calls missing
        assert granted - needed == set(), f"{function} may do what its code never does: {sorted(granted - needed)}"
        assert needed - granted == set(), f"{function}'s code does what its role refuses: {sorted(needed - granted)}"


def test_what_the_code_does_on_tables_is_what_the_design_says(template: HeraldTemplate, code: CodeCalls) -> None:
    # Given the scan of the code (the test above trusts it), When a few known facts are read back
    api = needed_on_tables(template, code, "ApiFunction")
    fanout = needed_on_tables(template, code, "FanoutHighFunction")
    deliver = needed_on_tables(template, code, "DeliverHighFunction")

    # Then the scan sees the calls each function is known to make, and not the others' calls
    assert ("IdempotencyTable", "dynamodb:PutItem") in api  # claiming an Idempotency-Key
    assert ("InboxTable", "dynamodb:Query") in api  # GET /users/{id}/inbox
    assert fanout == {
        ("DevicesTable", "dynamodb:Query"),  # the recipients' devices
        ("SubscribersTable", "dynamodb:Query"),  # a topic's subscribers, a shard at a time
        ("StatusTable", "dynamodb:UpdateItem"),  # a page's claim, then what it published
        ("StatusTable", "dynamodb:PutItem"),  # a long planned list, in items of its own
        ("PreferencesTable", "dynamodb:BatchGetItem"),  # the page's recipients' preferences
        ("HistoryTable", "dynamodb:BatchWriteItem"),  # one history entry per recipient of the page
        ("HistoryTable", "dynamodb:UpdateItem"),  # a one-recipient notification's page record, its entry too
    }
    assert ("StatusTable", "dynamodb:UpdateItem") in api  # DELETE /notifications/{id}: the cancel's mark
    assert ("PreferencesTable", "dynamodb:PutItem") in api  # PUT /users/{id}/preferences
    assert ("TemplatesTable", "dynamodb:DeleteItem") in api  # DELETE /templates/{id}
    assert ("HistoryTable", "dynamodb:Query") in api  # GET /users/{id}/notifications
    assert ("HistoryTable", "dynamodb:GetItem") in api  # a one-recipient notification's first page, for its status
    assert ("HistoryTable", "dynamodb:UpdateItem") in api  # ... and the cancel's mark on it
    assert ("InboxTable", "dynamodb:UpdateItem") in api  # an inbox item read or unread
    assert ("SubscribersTable", "dynamodb:UpdateItem") in api  # PUT /topics/{topic}/subscribers/{user_id}
    assert ("StatusTable", "dynamodb:GetItem") in deliver  # whether a broadcast's tally was written
    assert ("DevicesTable", "dynamodb:UpdateItem") in deliver  # a push endpoint SNS disabled
    assert ("InboxTable", "dynamodb:PutItem") in deliver  # an in-app delivery
    assert not any(table == "IdempotencyTable" for table, _ in fanout | deliver)
    assert needed_on_tables(template, code, "DlqRedriveFunction") == set()
    assert needed_on_tables(template, code, "ScheduleFunction") == set()  # it moves messages, writes no table
    assert not any(table == "PreferencesTable" for table, _ in deliver)


@pytest.mark.parametrize("service", ["sqs", "sns", "ses"])
def test_each_function_is_granted_the_actions_its_code_calls_and_no_others(
    template: HeraldTemplate, code: CodeCalls, service: str
) -> None:
    for function, spec in template.functions.items():
        # Given what the function's code calls on the service, and what its role allows there
        called = code.handler(spec.handler.rsplit(".", 1)[0]).actions(service)
        granted = {
            action
            for statement in role_statements(template, function)
            if statement.get("Effect") == "Allow"
            for action in _actions(statement)
            if action.lower().startswith(f"{service}:")
        }

        # Then they are the same set of actions (resources are checked by the tests of each grant)
        assert granted - called == set(), f"{function} may call what its code never calls: {sorted(granted - called)}"
        assert called - granted == set(), f"{function}'s code calls what its role refuses: {sorted(called - granted)}"


def test_no_grant_uses_a_wildcard_action(template: HeraldTemplate) -> None:
    for function in template.functions:
        wildcards = [a for s in role_statements(template, function) for a in _actions(s) if "*" in a]
        assert wildcards == [], function


def test_the_scan_accounts_for_every_aws_call_written_in_the_code(code: CodeCalls) -> None:
    # Given every `.operation(` of a DynamoDB, SQS, SNS or SES method name in functions/
    # When the typed scan's client calls and calls on the code's own classes are set against them
    # Then none is left over: a client under another name cannot hide a call from the tests above
    assert code.unaccounted() == []
    assert {call.service for call in code.calls} == {"dynamodb", "sqs", "sns", "ses"}
