"""The template's promises, read from template.yaml as SAM translates it: what AWS will run."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from herald.settings import DlqRedriveSettings
from herald_local.provision import evaluate_conditions
from herald_local.template import HeraldTemplate, Resolver

PRIORITY_FUNCTIONS = {"high": "DeliverHighFunction", "normal": "DeliverNormalFunction", "low": "DeliverLowFunction"}


@pytest.fixture(scope="module")
def template() -> HeraldTemplate:
    return HeraldTemplate.load()


def queue_of(template: HeraldTemplate, function: str) -> str:
    [source] = [s for s in template.event_sources if s.function == function]
    return source.queue


def properties(template: HeraldTemplate, logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = template.resources[logical_id]["Properties"]
    return props


def test_every_sqs_triggered_queue_hides_a_message_6x_its_function_timeout(template: HeraldTemplate) -> None:
    # Given each event source mapping, When its queue and function are read with the parameters' defaults,
    # Then visibility >= 6x timeout
    for source in template.event_sources:
        visibility = int(template.default_of(properties(template, source.queue)["VisibilityTimeout"]))
        assert visibility >= 6 * int(template.default_of(template.functions[source.function].timeout)), source.name


def test_every_consumed_queue_dead_letters_after_at_least_5_receives_into_a_longer_lived_dlq(
    template: HeraldTemplate,
) -> None:
    for source in template.event_sources:
        queue = properties(template, source.queue)
        redrive = queue["RedrivePolicy"]
        assert int(template.default_of(redrive["maxReceiveCount"])) >= 5, source.queue
        dlq = properties(template, redrive["deadLetterTargetArn"]["Fn::GetAtt"][0])
        assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"], source.queue


def test_every_consumer_reports_batch_item_failures(template: HeraldTemplate) -> None:
    assert template.event_sources
    assert all(source.report_batch_item_failures for source in template.event_sources)


def test_high_priority_gets_small_fast_batches_and_the_most_concurrency(template: HeraldTemplate) -> None:
    # Given the three deliver functions' event source mappings
    sources = {
        priority: next(s for s in template.event_sources if s.function == function)
        for priority, function in PRIORITY_FUNCTIONS.items()
    }
    high, normal, low = sources["high"], sources["normal"], sources["low"]

    # Then high batches smallest with no window and the most concurrency; low the reverse, capped
    assert high.batching_window == 0
    assert high.batch_size < normal.batch_size < low.batch_size
    assert low.batching_window > 0
    assert high.maximum_concurrency and normal.maximum_concurrency and low.maximum_concurrency
    assert high.maximum_concurrency > normal.maximum_concurrency > low.maximum_concurrency
    # And each reads its own priority's queue, which the topic fills for that priority only
    for priority, function in PRIORITY_FUNCTIONS.items():
        queue = queue_of(template, function)
        [subscription] = [
            r["Properties"]
            for r in template.resources.values()
            if r["Type"] == "AWS::SNS::Subscription"
            and r["Properties"]["Protocol"] == "sqs"
            and r["Properties"]["Endpoint"]["Fn::GetAtt"][0] == queue
        ]
        assert subscription["FilterPolicy"] == {"priority": [priority]}
        assert subscription["RawMessageDelivery"] is True
        assert template.functions[function].environment["PRIORITY"] == priority


def test_every_route_requires_the_api_key_and_the_usage_plan_throttles(template: HeraldTemplate) -> None:
    [api] = template.apis
    assert {(r.method, r.path) for r in api.routes} >= {
        ("PUT", "/users/{user_id}/devices/{device_id}"),
        ("DELETE", "/users/{user_id}/devices/{device_id}"),
        ("GET", "/users/{user_id}/devices"),
        ("POST", "/notifications"),
        ("GET", "/notifications/{notification_id}"),
        ("GET", "/users/{user_id}/inbox"),
        ("GET", "/queues"),
        ("GET", "/openapi.json"),
    }
    assert all(route.api_key_required for route in api.routes)
    assert api.rate_limit and api.burst_limit


def test_status_and_inbox_items_expire_and_tables_bill_on_demand(template: HeraldTemplate) -> None:
    tables = {k: r["Properties"] for k, r in template.resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert set(tables) == {
        "DevicesTable",
        "StatusTable",
        "InboxTable",
        "IdempotencyTable",
        "SubscribersTable",
        "PreferencesTable",
        "TemplatesTable",
        "HistoryTable",
    }
    assert all(t["BillingMode"] == "PAY_PER_REQUEST" for t in tables.values())
    for name in ("StatusTable", "InboxTable", "IdempotencyTable", "HistoryTable"):
        assert tables[name]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def dead_letter_queues(template: HeraldTemplate) -> set[str]:
    """The queues some queue's redrive policy moves its messages to."""
    return {
        r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for r in template.resources.values()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r.get("Properties", {})
    }


def test_every_table_can_be_restored_to_a_point_in_time_and_outlives_its_stack(template: HeraldTemplate) -> None:
    # Given every DynamoDB table: each holds user data (devices, statuses, the only copy of in-app
    # messages, the answers idempotency keys replay)
    tables = {k: r for k, r in template.resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert tables
    for name, table in tables.items():
        # Then it has point-in-time recovery and is kept when the stack is deleted or a change replaces it
        assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        assert (table.get("DeletionPolicy"), table.get("UpdateReplacePolicy")) == ("Retain", "Retain"), name


def test_dead_letters_outlive_their_stack_and_a_replaced_queue_keeps_what_it_held(template: HeraldTemplate) -> None:
    queues = {k: r for k, r in template.resources.items() if r["Type"] == "AWS::SQS::Queue"}
    dlqs = dead_letter_queues(template)
    assert dlqs and set(queues) - dlqs
    for name, queue in queues.items():
        # Then a DLQ is always kept; a work queue goes with its stack, but a replaced one is kept with its messages
        expected = ("Retain", "Retain") if name in dlqs else ("Delete", "Retain")
        assert (queue.get("DeletionPolicy"), queue.get("UpdateReplacePolicy")) == expected, name


def test_every_stateful_resource_says_what_happens_to_it_on_deletion_and_replacement(template: HeraldTemplate) -> None:
    # Given the resource types cfn-lint holds stateful (tables, queues, log groups, ...)
    import cfnlint.data.AdditionalSpecs
    from cfnlint.helpers import load_resource

    spec = load_resource(cfnlint.data.AdditionalSpecs, "StatefulResources.json")["ResourceTypes"]
    stateful = {kind for kind, description in spec.items() if not description.get("DeleteRequiresEmptyResource")}

    # When the template's resources of those types are read
    found = {name: r for name, r in template.resources.items() if r["Type"] in stateful}

    # Then each sets both policies explicitly
    assert {r["Type"] for r in found.values()} >= {"AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup"}
    assert [n for n, r in found.items() if not {"DeletionPolicy", "UpdateReplacePolicy"} <= set(r)] == []


@pytest.mark.slow
def test_cfn_lint_informational_checks_find_nothing() -> None:
    # Given cfn-lint with its informational checks on (I3011: a stateful resource without deletion policies)
    from cfnlint.api import ManualArgs, lint_file

    from herald_local.template import TEMPLATE

    # When it lints template.yaml, Then it reports nothing
    matches = lint_file(TEMPLATE, ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches] == []


def _tls_only(statement: dict[str, Any]) -> bool:
    return (
        statement.get("Effect") == "Deny"
        and statement.get("Principal") in ("*", {"AWS": "*"})
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    )


def test_every_queue_refuses_requests_not_over_tls_in_its_one_policy(template: HeraldTemplate) -> None:
    queues = [k for k, r in template.resources.items() if r["Type"] == "AWS::SQS::Queue"]
    policies = [r["Properties"] for r in template.resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    for queue in queues:
        # Given the queue policies naming this queue: exactly one (a second would overwrite the first)
        [policy] = [p for p in policies if {"Ref": queue} in p["Queues"]]

        # Then it denies every SQS action on the queue to anyone not over TLS
        denials = [s for s in policy["PolicyDocument"]["Statement"] if _tls_only(s)]
        assert any(
            s["Action"] in ("sqs:*", "*") and {"Fn::GetAtt": [queue, "Arn"]} in s["Resource"] for s in denials
        ), queue


def test_every_topic_refuses_requests_not_over_tls_and_still_takes_what_it_must(template: HeraldTemplate) -> None:
    topics = [k for k, r in template.resources.items() if r["Type"] == "AWS::SNS::Topic"]
    policies = [r["Properties"] for r in template.resources.values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    assert len(topics) >= 2
    for topic in topics:
        [policy] = [p for p in policies if {"Ref": topic} in p["Topics"]]
        statements = policy["PolicyDocument"]["Statement"]
        assert any(
            _tls_only(s) and "sns:Publish" in s["Action"] and s["Resource"] == {"Ref": topic} for s in statements
        )
    # And the alarm topic, its default policy replaced, still lets this account's alarms publish
    alarm_topics = {
        action["Ref"]
        for r in template.resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        for action in r["Properties"]["AlarmActions"]
    }
    for topic in alarm_topics:
        [policy] = [p for p in policies if {"Ref": topic} in p["Topics"]]
        assert any(
            s["Effect"] == "Allow"
            and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
            and s["Action"] == "sns:Publish"
            and s["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
            for s in policy["PolicyDocument"]["Statement"]
        ), topic


def test_functions_run_python_312_on_arm64(template: HeraldTemplate) -> None:
    for name in template.functions:
        props = properties(template, name)
        assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["arm64"]), name


def statements_on(template: HeraldTemplate, role: str, resource: str) -> list[dict[str, Any]]:
    """The statements of a function's role that name `resource` (by Ref or GetAtt) among their resources."""
    found = []
    policies = []
    for policy in properties(template, role).get("Policies", []):
        # A conditional policy ({"Fn::If": [condition, policy, AWS::NoValue]}) counts with both branches.
        branches = policy["Fn::If"][1:] if "Fn::If" in policy else [policy]
        policies.extend(branch for branch in branches if "PolicyDocument" in branch)
    for policy in policies:
        for statement in policy["PolicyDocument"]["Statement"]:
            resources = statement.get("Resource", [])
            if resource in repr(resources if isinstance(resources, list) else [resources]):
                found.append(statement)
    return found


def test_only_the_api_function_touches_idempotency_keys_and_only_as_it_needs(template: HeraldTemplate) -> None:
    # Given the translated template, When the roles are read
    roles = [name for name, r in template.resources.items() if r["Type"] == "AWS::IAM::Role"]

    # Then the API function finds the table through its environment, may claim, read, complete and
    # release a key, and nothing else; no other function may touch the table
    assert template.functions["ApiFunction"].environment["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    [statement] = statements_on(template, "ApiFunctionRole", "IdempotencyTable")
    assert sorted(statement["Action"]) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    others = [role for role in roles if role != "ApiFunctionRole"]
    assert [role for role in others if statements_on(template, role, "IdempotencyTable")] == []


def test_the_api_function_may_read_queue_depths_and_peek_at_dead_letters_only(template: HeraldTemplate) -> None:
    # Given the API function's role, When its SQS statements are read
    dlqs = [
        "HighIntakeDeadLetterQueue",
        "NormalIntakeDeadLetterQueue",
        "LowIntakeDeadLetterQueue",
        "HighDeadLetterQueue",
        "NormalDeadLetterQueue",
        "LowDeadLetterQueue",
        "ScheduleDeadLetterQueue",
        "FeedbackDeadLetterQueue",
    ]
    receive = [
        s for s in statements_on(template, "ApiFunctionRole", "DeadLetterQueue") if "sqs:ReceiveMessage" in s["Action"]
    ]

    # Then ReceiveMessage (a peek, for the age of the oldest dead letter) is allowed on the eight DLQs alone,
    # and never with DeleteMessage
    [statement] = receive
    assert sorted(r["Fn::GetAtt"][0] for r in statement["Resource"]) == sorted(dlqs)
    assert "sqs:DeleteMessage" not in repr(properties(template, "ApiFunctionRole")["Policies"])


def test_low_priority_makes_fewer_provider_calls_at_once_than_high(template: HeraldTemplate) -> None:
    # Given the deliver functions' PARALLEL_SENDS at the parameters' defaults
    sends = {
        priority: int(template.default_of(template.functions[function].environment["PARALLEL_SENDS"]))
        for priority, function in PRIORITY_FUNCTIONS.items()
    }

    # Then a newsletter flood runs fewer sends at once than password resets do
    assert sends["low"] < sends["normal"] <= sends["high"]


LANES = {"high": "High", "normal": "Normal", "low": "Low"}


def test_each_priority_has_its_own_intake_queue_dlq_mapping_and_fan_out_function(template: HeraldTemplate) -> None:
    # Given the template's event source mappings and functions
    api = template.functions["ApiFunction"].environment
    for priority, name in LANES.items():
        function = f"Fanout{name}Function"
        [source] = [s for s in template.event_sources if s.function == function]
        environment = template.functions[function].environment

        # Then the API queues a notification of this priority on this lane's intake queue, which only this
        # lane's fan-out function reads; its continuations and dead letters stay on the lane
        assert api[f"{priority.upper()}_INTAKE_QUEUE_URL"] == {"Ref": f"{name}IntakeQueue"}
        assert source.queue == f"{name}IntakeQueue"
        assert environment["PRIORITY"] == priority
        assert environment["QUEUE_URL"] == {"Ref": f"{name}IntakeQueue"}
        assert environment["DLQ_URL"] == {"Ref": f"{name}IntakeDeadLetterQueue"}
        dlq = properties(template, f"{name}IntakeQueue")["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert dlq == f"{name}IntakeDeadLetterQueue"
        # And its concurrency is a template parameter
        assert source.maximum_concurrency == {"Ref": f"{name}FanoutMaximumConcurrency"}
    # And no queue is read by two mappings
    queues = [source.queue for source in template.event_sources]
    assert len(queues) == len(set(queues))


def test_fan_out_concurrency_defaults_favour_high_priority(template: HeraldTemplate) -> None:
    # Given each lane's fan-out MaximumConcurrency at the parameters' defaults
    concurrency = {
        priority: int(template.default_of({"Ref": f"{name}FanoutMaximumConcurrency"}))
        for priority, name in LANES.items()
    }

    # Then high gets the most and low the least; each is one a mapping accepts (2-1000)
    assert concurrency["high"] > concurrency["normal"] > concurrency["low"] >= 2


def test_a_fan_out_function_may_queue_pages_and_dead_letters_on_its_own_lane_only(template: HeraldTemplate) -> None:
    for name in LANES.values():
        role = f"Fanout{name}FunctionRole"
        # Then it may send to its own intake queue (the next page) and its DLQ, and to no other lane's
        assert statements_on(template, role, f"{name}IntakeQueue")
        assert statements_on(template, role, f"{name}IntakeDeadLetterQueue")
        for other in set(LANES.values()) - {name}:
            assert statements_on(template, role, f"{other}IntakeQueue") == [], (role, other)


ACCOUNT = "123456789012"
APNS_APP = f"arn:aws:sns:us-east-1:{ACCOUNT}:app/APNS/herald-ios"
FCM_APP = f"arn:aws:sns:us-east-1:{ACCOUNT}:app/GCM/herald-android"


class _Elsewhere(dict[str, str]):
    """What a statement names outside the grant under test: a placeholder, so one statement can be resolved."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def deployed_statements(template: HeraldTemplate, function: str, **parameters: str) -> dict[str, dict[str, Any]]:
    """A function's statements by Sid, as CloudFormation would deploy them with these parameter values."""
    values = {**template.parameter_defaults(), **parameters}
    refs = _Elsewhere({**values, "AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT})
    resolve = Resolver(refs, _Elsewhere(), evaluate_conditions(template.cfn.get("Conditions", {}), values))
    role = properties(template, properties(template, function)["Role"]["Fn::GetAtt"][0])
    documents = [policy["PolicyDocument"] for policy in resolve(role.get("Policies", []))]
    documents += [
        resolve(template.resources[arn["Ref"]]["Properties"]["PolicyDocument"])
        for arn in role.get("ManagedPolicyArns", [])
        if isinstance(arn, dict) and arn.get("Ref") in template.resources
    ]
    return {s["Sid"]: s for document in documents for s in document["Statement"] if "Sid" in s}


def test_email_is_sent_from_the_sender_identity_only(template: HeraldTemplate) -> None:
    # Given a deploy whose sender is an address in a domain SES verified
    statements = deployed_statements(template, "DeliverHighFunction", SenderEmail="alerts@mail.example.org")

    # Then the deliver function may send as that address's identity or its domain's, from that address alone,
    # with Herald's configuration set (SES authorizes the set an email is sent with too)
    send = statements["SendEmail"]
    assert send["Action"] == "ses:SendEmail"
    assert send["Resource"] == [
        f"arn:aws:ses:us-east-1:{ACCOUNT}:identity/alerts@mail.example.org",
        f"arn:aws:ses:us-east-1:{ACCOUNT}:identity/mail.example.org",
        f"arn:aws:ses:us-east-1:{ACCOUNT}:configuration-set/<EmailConfigurationSet>",
    ]
    assert send["Condition"] == {"StringEquals": {"ses:FromAddress": "alerts@mail.example.org"}}


def test_a_sender_with_a_display_name_or_no_domain_is_refused_at_deploy(template: HeraldTemplate) -> None:
    import re

    pattern = re.compile(template.cfn["Parameters"]["SenderEmail"]["AllowedPattern"])
    assert pattern.fullmatch("alerts@mail.example.org")
    assert not pattern.fullmatch("Herald <alerts@mail.example.org>")
    assert not pattern.fullmatch("alerts")


def test_push_goes_to_endpoints_of_heralds_platform_applications_only(template: HeraldTemplate) -> None:
    # Given a deploy with an APNs and an FCM platform application
    deliver = deployed_statements(
        template, "DeliverLowFunction", ApnsPlatformApplicationArn=APNS_APP, FcmPlatformApplicationArn=FCM_APP
    )
    api = deployed_statements(
        template, "ApiFunction", ApnsPlatformApplicationArn=APNS_APP, FcmPlatformApplicationArn=FCM_APP
    )
    endpoints = [
        f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/APNS/herald-ios/*",
        f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/GCM/herald-android/*",
    ]

    # Then publishing, and managing endpoints, reach the endpoints of those two applications
    assert (deliver["SendPush"]["Action"], deliver["SendPush"]["Resource"]) == ("sns:Publish", endpoints)
    assert api["ManagePushEndpoints"]["Resource"] == endpoints
    assert api["CreatePushEndpoints"]["Resource"] == [APNS_APP, FCM_APP]
    # And an endpoint of another application of the account matches none of them
    ours = f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/APNS/herald-ios/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    theirs = f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/APNS/other-app/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert any(fnmatch.fnmatchcase(ours, pattern) for pattern in endpoints)
    assert not any(fnmatch.fnmatchcase(theirs, pattern) for pattern in endpoints)


def test_without_a_platform_application_its_endpoints_are_out_of_reach(template: HeraldTemplate) -> None:
    # Given a deploy with APNs only, and one with no push at all
    apns_only = deployed_statements(template, "DeliverNormalFunction", ApnsPlatformApplicationArn=APNS_APP)
    no_push = deployed_statements(template, "DeliverNormalFunction")

    # Then push reaches APNs endpoints only, or nothing (SMS publishing stays, on no SNS resource)
    assert apns_only["SendPush"]["Resource"] == [f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/APNS/herald-ios/*"]
    assert "SendPush" not in no_push
    assert "CreatePushEndpoints" not in deployed_statements(template, "ApiFunction")
    assert no_push["SendSms"]["NotResource"] == "arn:aws:sns:*:*:*"


def test_only_the_normal_and_low_intake_lanes_wait_for_a_fuller_fan_out_batch(template: HeraldTemplate) -> None:
    # Given the three fan-out functions' event source mappings
    windows = {
        priority: next(s for s in template.event_sources if s.function == f"Fanout{name}Function").batching_window
        for priority, name in LANES.items()
    }

    # Then high hands each notification on at once; normal and low wait up to 1 s to amortise a receive,
    # a delete and an invocation over up to 10 notifications (issue 11's cost), and no longer
    assert windows["high"] == 0
    assert 0 < windows["normal"] <= 1
    assert 0 < windows["low"] <= 1


def test_the_redrive_drains_every_dlq_of_the_template_into_the_queue_it_takes_dead_letters_from(
    template: HeraldTemplate,
) -> None:
    # Given each queue's redrive policy: which DLQ takes its dead letters
    source_of = {
        props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]: name
        for name, resource in template.resources.items()
        if resource["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in (props := resource.get("Properties", {}))
    }
    # When the redrive function's routes are read from its environment (each URL as the queue it names)
    environment = template.functions["DlqRedriveFunction"].environment
    settings = DlqRedriveSettings.from_environment(
        {name: value["Ref"] for name, value in environment.items() if isinstance(value, dict) and "Ref" in value}
    )
    routes = {route.dlq_url: route.destination_url for route in settings.routes("all")}

    # Then "all" covers every DLQ (the feedback function's too), each back into its own source queue
    assert routes == source_of
    assert "FeedbackDeadLetterQueue" in routes and routes["FeedbackDeadLetterQueue"] == "FeedbackQueue"
    # And the role may drain each DLQ and refill each source queue, and no other queue
    [drain] = [
        s for s in statements_on(template, "DlqRedriveFunctionRole", "Queue") if s["Sid"] == "DrainDeadLetterQueues"
    ]
    [refill] = [s for s in statements_on(template, "DlqRedriveFunctionRole", "Queue") if s["Sid"] == "RefillQueues"]
    assert sorted(r["Fn::GetAtt"][0] for r in drain["Resource"]) == sorted(source_of)
    assert sorted(r["Fn::GetAtt"][0] for r in refill["Resource"]) == sorted(source_of.values())
