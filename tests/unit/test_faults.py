"""The local stack's fault injector: rates, determinism, what each fault raises, and what it counts."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

import deliver.app
from herald.logic.failures import PERMANENT_ERROR_CODES, failure_from
from herald.models.domain import Channel, DeliveryJob
from herald_local.__main__ import main as herald_local_main
from herald_local.faults import (
    ChannelFaults,
    FaultInjector,
    FaultPlan,
    SimulatedCrash,
    compose_hooks,
    duplicate_message,
)
from tests.events import load_event
from tests.fakes import FakeSender
from tests.unit.test_deliver_handler import dependencies_with


def job_for(job: DeliveryJob, n: int, channel: Channel = Channel.EMAIL) -> DeliveryJob:
    return job.model_copy(update={"notification_id": f"n-{n}", "device_id": f"d-{n}", "channel": channel})


def outcome(injector: FaultInjector, sender: FakeSender, job: DeliveryJob) -> str:
    try:
        injector.send(job.channel, sender, job)
    except ClientError as error:
        return "permanent" if failure_from(error).permanent else "transient"
    except SimulatedCrash:
        return "crash"
    return "sent"


PLAN = FaultPlan(seed=7, default=ChannelFaults(transient_rate=0.20, permanent_rate=0.05, crash_after_send_rate=0.02))


def test_each_rate_is_honoured_over_many_deliveries(job: DeliveryJob) -> None:
    # Given a plan with 20% transient, 5% permanent and 2% crash-after-send faults
    injector, sender = FaultInjector(PLAN), FakeSender()

    # When 20,000 different deliveries are tried once each
    outcomes = Counter(outcome(injector, sender, job_for(job, n)) for n in range(20_000))

    # Then each kind happens at its rate, within 1 point, and the counts say the same
    assert outcomes["transient"] / 20_000 == pytest.approx(0.20, abs=0.01)
    assert outcomes["permanent"] / 20_000 == pytest.approx(0.05, abs=0.01)
    assert outcomes["crash"] / 20_000 == pytest.approx(0.02, abs=0.01)
    counts = injector.counts().channels[Channel.EMAIL]
    assert (counts.transient, counts.permanent, counts.crashes) == (
        outcomes["transient"],
        outcomes["permanent"],
        outcomes["crash"],
    )
    # ...and the provider was called exactly for the sends and the crashes after send
    assert counts.provider_calls == len(sender.sent) == outcomes["sent"] + outcomes["crash"]


def test_the_same_seed_makes_the_same_decisions_and_another_seed_others(job: DeliveryJob) -> None:
    jobs = [job_for(job, n) for n in range(300)]

    def decisions(plan: FaultPlan) -> list[str]:
        injector = FaultInjector(plan)
        # each delivery tried three times: retries get decisions of their own
        return [outcome(injector, FakeSender(), j) for j in jobs for _ in range(3)]

    assert decisions(PLAN) == decisions(PLAN)
    assert decisions(PLAN) != decisions(PLAN.model_copy(update={"seed": 8}))


def test_a_transient_fault_is_a_retryable_provider_error_and_the_provider_is_not_called(job: DeliveryJob) -> None:
    # Given every channel failing transiently
    injector = FaultInjector(FaultPlan(default=ChannelFaults(transient_rate=1.0)))
    for channel in Channel:
        sender = FakeSender()

        # When a delivery is tried
        with pytest.raises(ClientError) as raised:
            injector.send(channel, sender, job_for(job, 1, channel))

        # Then Herald's own classification calls it transient, and nothing reached the provider
        assert raised.value.response["Error"]["Code"] not in PERMANENT_ERROR_CODES, channel
        assert failure_from(raised.value).permanent is False
        assert sender.tried == []
    assert all(c.provider_calls == 0 and c.transient == 1 for c in injector.counts().channels.values())


@pytest.mark.parametrize(
    ("channel", "code"),
    [(Channel.EMAIL, "MessageRejected"), (Channel.SMS, "InvalidParameter"), (Channel.PUSH, "EndpointDisabled")],
)
def test_a_permanent_fault_is_the_channels_own_permanent_error(job: DeliveryJob, channel: Channel, code: str) -> None:
    injector, sender = FaultInjector(FaultPlan(default=ChannelFaults(permanent_rate=1.0))), FakeSender()
    with pytest.raises(ClientError) as raised:
        injector.send(channel, sender, job_for(job, 1, channel))
    assert raised.value.response["Error"]["Code"] == code
    assert failure_from(raised.value).permanent is True
    assert sender.tried == []
    assert injector.counts().channels[channel].permanent == 1


def test_in_app_never_fails_for_good(job: DeliveryJob) -> None:
    # Given a default permanent rate of 100%, Then in_app is spared it
    injector, sender = FaultInjector(FaultPlan(default=ChannelFaults(permanent_rate=1.0))), FakeSender()
    assert injector.send(Channel.IN_APP, sender, job_for(job, 1, Channel.IN_APP)) == "provider-1"
    # ...and a plan asking for it explicitly is refused, naming the field
    with pytest.raises(ValidationError, match="in_app"):
        FaultPlan.model_validate({"channels": {"in_app": {"permanent_rate": 0.1}}})


def test_rates_that_add_up_past_one_are_refused() -> None:
    with pytest.raises(ValidationError, match="must not exceed 1"):
        ChannelFaults(transient_rate=0.6, permanent_rate=0.3, crash_after_send_rate=0.2)


def test_a_crash_after_send_reaches_the_provider_then_escapes_except_exception(job: DeliveryJob) -> None:
    # Given a provider that always accepts, and a plan that always crashes after it did
    injector, sender = FaultInjector(FaultPlan(default=ChannelFaults(crash_after_send_rate=1.0))), FakeSender()

    # When a delivery is tried by code that handles every Exception
    def herald_like() -> str:
        try:
            return injector.send(Channel.EMAIL, sender, job)
        except Exception:
            return "handled"

    # Then the crash is not handled, the provider has the message, and the counts say one crash
    with pytest.raises(SimulatedCrash):
        herald_like()
    assert len(sender.sent) == 1
    counts = injector.counts().channels[Channel.EMAIL]
    assert (counts.provider_calls, counts.crashes) == (1, 1)


def test_a_crash_after_send_fails_the_deliver_handlers_whole_invocation(lambda_context: Any) -> None:
    # Given the deliver function with its in-app provider crashing the process after each send
    sender = FakeSender()
    injector = FaultInjector(FaultPlan(default=ChannelFaults(crash_after_send_rate=1.0)))
    dependencies = injector.hook("DeliverHighFunction", dependencies_with(sender))

    # When it handles the sample batch, Then neither Herald nor Powertools' batch processor swallows it
    with pytest.raises(SimulatedCrash):
        deliver.app.lambda_handler(load_event("deliver"), lambda_context, dependencies=dependencies)

    # ...the provider accepted the delivery, and no status was written after it
    assert len(sender.sent) == 1
    assert dependencies.status.attempts == []


def test_latency_is_added_before_the_call_within_its_jitter(job: DeliveryJob) -> None:
    slept: list[float] = []
    plan = FaultPlan(channels={Channel.SMS: ChannelFaults(latency_ms=50, latency_jitter_ms=20)})
    injector, sender = FaultInjector(plan, sleep=slept.append), FakeSender()
    for n in range(100):
        injector.send(Channel.SMS, sender, job_for(job, n, Channel.SMS))
    assert len(slept) == 100 and all(0.050 <= s <= 0.070 for s in slept)
    assert len(set(slept)) > 50  # jittered, not constant
    assert injector.counts().channels[Channel.SMS].added_latency_ms == pytest.approx(sum(slept) * 1000)
    # a channel without latency is not slowed
    injector.send(Channel.EMAIL, sender, job)
    assert len(slept) == 100


def test_the_hook_wraps_only_a_deliver_functions_senders(job: DeliveryJob) -> None:
    # Given deliver dependencies and an API-like dependency object without senders
    injector = FaultInjector(FaultPlan(default=ChannelFaults(transient_rate=1.0)))
    sender = FakeSender()
    wrapped = injector.hook("DeliverLowFunction", dependencies_with(sender))

    @dataclasses.dataclass(frozen=True)
    class ApiDependencies:
        table: str

    api = ApiDependencies("t")

    # Then the deliver senders fail as planned, and the API's dependencies are the same object
    with pytest.raises(ClientError):
        wrapped.senders[Channel.IN_APP].send(job)
    assert sender.tried == []
    assert injector.hook("ApiFunction", api) is api


def test_composed_hooks_apply_in_order_so_the_injector_wraps_a_tests_own_wrapper(job: DeliveryJob) -> None:
    # Given a test hook that counts calls reaching it, and the injector crashing after every send
    reached: list[str] = []

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def send(self, j: DeliveryJob) -> str:
            reached.append(j.device_id)
            return str(self.inner.send(j))

    def test_hook(function: str, dependencies: Any) -> Any:
        senders = {c: Counting(s) for c, s in dependencies.senders.items()}
        return dataclasses.replace(dependencies, senders=senders)

    injector = FaultInjector(FaultPlan(default=ChannelFaults(crash_after_send_rate=1.0)))
    hook = compose_hooks(test_hook, None, injector.hook)
    assert hook is not None
    dependencies = hook("DeliverHighFunction", dependencies_with(FakeSender()))

    # When a delivery is tried, Then it passed through the test's wrapper before the crash
    with pytest.raises(SimulatedCrash):
        dependencies.senders[Channel.IN_APP].send(job)
    assert reached == [job.device_id]
    assert compose_hooks(None, None) is None


def test_duplicates_follow_the_rate_per_message_and_receive(job: DeliveryJob) -> None:
    injector = FaultInjector(FaultPlan(seed=3, duplicate_rate=0.05))
    messages = [{"MessageId": f"m-{n}", "Attributes": {"ApproximateReceiveCount": "1"}} for n in range(20_000)]
    chosen = [m for m in messages if injector.should_duplicate("q", m)]
    assert len(chosen) / 20_000 == pytest.approx(0.05, abs=0.01)
    # the same receive of the same message is always decided the same way; a redelivery anew
    assert [m for m in messages if injector.should_duplicate("q", m)] == chosen
    redelivered = [{**m, "Attributes": {"ApproximateReceiveCount": "2"}} for m in messages]
    assert [m["MessageId"] for m in redelivered if injector.should_duplicate("q", m)] != [
        m["MessageId"] for m in chosen
    ]
    assert not FaultInjector(FaultPlan()).should_duplicate("q", messages[0])


def test_a_duplicate_carries_the_same_body_and_attributes() -> None:
    received = {
        "MessageId": "m-1",
        "Body": '{"x": 1}',
        "MD5OfBody": "ignored",
        "MessageAttributes": {"priority": {"DataType": "String", "StringValue": "high", "StringListValues": []}},
    }
    assert duplicate_message("https://q", received) == {
        "QueueUrl": "https://q",
        "MessageBody": '{"x": 1}',
        "MessageAttributes": {"priority": {"DataType": "String", "StringValue": "high"}},
    }


def test_a_plan_reads_from_json_as_the_command_line_takes_it() -> None:
    plan = FaultPlan.model_validate_json(
        '{"seed": 5, "duplicate_rate": 0.05, "default": {"transient_rate": 0.2},'
        ' "channels": {"push": {"permanent_rate": 0.01, "latency_ms": 30}}}'
    )
    assert plan.for_channel(Channel.EMAIL).transient_rate == 0.2
    assert plan.for_channel(Channel.PUSH) == ChannelFaults(permanent_rate=0.01, latency_ms=30)
    with pytest.raises(ValidationError, match="transient"):
        FaultPlan.model_validate_json('{"default": {"transient": 0.2}}')


def test_the_command_refuses_a_bad_plan_naming_the_field(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a plan file with a misspelt field
    plan = tmp_path / "plan.json"
    plan.write_text('{"default": {"transient": 0.2}}')

    # When the local stack is started with it, Then it stops before starting anything, naming the field
    with pytest.raises(SystemExit) as exited:
        herald_local_main(["--faults", str(plan)])
    assert exited.value.code == 2
    assert "default.transient" in capsys.readouterr().err


class RacingFunction:
    """A queue's function that records every batch it gets, and waits (bounded) until `meet` batches
    are inside at once: it returns only if they really overlap."""

    name = "DeliverHighFunction"

    def __init__(self, meet: int = 1, fail: set[str] | None = None, crash_on: str | None = None):
        self.batches: list[list[str]] = []
        self.together = threading.Barrier(meet)
        self.overlapped = True
        self.fail = fail or set()
        self.crash_on = crash_on
        self.journal = "the function's own"

    def invoke(self, event: dict[str, Any]) -> Any:
        ids = [record["messageId"] for record in event["Records"]]
        self.batches.append(ids)
        try:
            self.together.wait(timeout=5)
        except threading.BrokenBarrierError:
            self.overlapped = False
        if self.crash_on and self.crash_on in ids:
            raise RuntimeError("process exited")
        return {
            "batchItemFailures": [
                {"itemIdentifier": i} for i in ids if i.split("-copy")[0] in self.fail or i in self.fail
            ]
        }


def records(*ids: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": i,
                "receiptHandle": f"rh-{i}",
                "body": f"job {i}",
                "attributes": {"ApproximateReceiveCount": "1"},
            }
            for i in ids
        ]
    }


def test_a_message_chosen_for_copies_is_handled_with_them_in_its_batch_and_in_a_parallel_batch_at_once() -> None:
    # Given a plan where every message gets 2 copies in its batch and 2 in a parallel batch
    injector = FaultInjector(FaultPlan(concurrent_copy_rate=1.0, copies_in_batch=2, copies_in_parallel_batch=2))
    function = RacingFunction(meet=2)

    # When the event source mapping invokes the function with a batch of one message
    result = injector.with_concurrent_copies(function, "q").invoke(records("m1"))

    # Then the function ran two batches at the same moment: the original with its in-batch copies
    # right behind it (same body and receipt handle), and the other copies
    assert function.overlapped
    assert sorted(function.batches) == [["m1", "m1-copy0", "m1-copy1"], ["m1-copy2", "m1-copy3"]]
    assert result == {"batchItemFailures": []}
    assert injector.counts().concurrent_copies["q"].model_dump() == {
        "messages": 1,
        "in_batch": 2,
        "in_parallel_batch": 2,
    }


def test_only_the_originals_outcome_reaches_the_event_source_mapping() -> None:
    # Given copies of m1 that fail (found it claimed, say) while m1 itself succeeds, and m2 that fails
    injector = FaultInjector(FaultPlan(concurrent_copy_rate=1.0, copies_in_batch=1, copies_in_parallel_batch=1))
    function = RacingFunction(meet=2, fail={"m1-copy0", "m1-copy1", "m2"})
    wrapped = injector.with_concurrent_copies(function, "q")

    # When both are handled with their copies
    result = wrapped.invoke(records("m1", "m2"))

    # Then the mapping hears of m2's failure only: copies never reach it, and m1 is deleted
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert wrapped.journal == "the function's own"  # anything else is the function's


def test_a_parallel_batch_of_copies_that_crashes_leaves_the_original_to_carry_on() -> None:
    # Given copies whose parallel batch crashes
    injector = FaultInjector(FaultPlan(concurrent_copy_rate=1.0, copies_in_batch=0, copies_in_parallel_batch=1))
    function = RacingFunction(meet=2, crash_on="m1-copy0")

    # When the original is handled, Then its own outcome stands
    assert injector.with_concurrent_copies(function, "q").invoke(records("m1")) == {"batchItemFailures": []}


def test_copies_follow_their_rate_per_message_and_receive() -> None:
    # Given a 5% rate, Then about 5% of 20,000 messages get copies, always the same ones for the same receive
    injector = FaultInjector(FaultPlan(seed=3, concurrent_copy_rate=0.05))
    batch = records(*(f"m-{n}" for n in range(20_000)))["Records"]
    chosen = [r["messageId"] for r in batch if injector.should_copy(injector.plan, "q", r)]
    assert len(chosen) / 20_000 == pytest.approx(0.05, abs=0.01)
    assert [r["messageId"] for r in batch if injector.should_copy(injector.plan, "q", r)] == chosen
    # and without a rate, a batch goes through as it came
    function = RacingFunction()
    assert FaultInjector(FaultPlan()).with_concurrent_copies(function, "q").invoke(records("m1")) == {
        "batchItemFailures": []
    }
    assert function.batches == [["m1"]]
    with pytest.raises(ValidationError, match="copies_in_batch"):
        FaultPlan(concurrent_copy_rate=0.1, copies_in_batch=0, copies_in_parallel_batch=0)


def test_an_injector_without_a_plan_passes_every_call_straight_through(job: DeliveryJob) -> None:
    # Given the injector a local stack always has, with no plan
    injector, sender = FaultInjector(), FakeSender()

    # When deliveries are sent and queue messages received through it
    outcomes = Counter(outcome(injector, sender, job_for(job, n)) for n in range(200))
    duplicated = injector.should_duplicate("q", {"MessageId": "m1", "Attributes": {"ApproximateReceiveCount": "1"}})
    function = RacingFunction()
    copied = injector.with_concurrent_copies(function, "q").invoke(records("m1"))

    # Then every one reached the provider, none was duplicated or copied, and nothing counts as injected
    assert outcomes == Counter({"sent": 200}) and len(sender.sent) == 200
    assert not duplicated
    assert copied == {"batchItemFailures": []} and function.batches == [["m1"]]
    assert injector.counts().channels[Channel.EMAIL].transient == 0


def test_a_plan_set_while_running_applies_from_the_next_call_and_clearing_it_stops_the_faults(job: DeliveryJob) -> None:
    # Given an injector with no plan
    injector, sender = FaultInjector(), FakeSender()
    assert outcome(injector, sender, job_for(job, 1)) == "sent"

    # When a plan failing every email call is set
    injector.plan = FaultPlan(channels={Channel.EMAIL: ChannelFaults(transient_rate=1.0)})

    # Then the next email call fails, an sms call does not
    assert outcome(injector, sender, job_for(job, 2)) == "transient"
    assert outcome(injector, sender, job_for(job, 3, Channel.SMS)) == "sent"

    # When it is cleared, Then email calls reach the provider again
    injector.plan = None
    assert outcome(injector, sender, job_for(job, 4)) == "sent"
    assert [sent.notification_id for sent in sender.sent] == ["n-1", "n-3", "n-4"]


def test_switching_plans_while_calls_run_gives_each_call_one_whole_plan(job: DeliveryJob) -> None:
    # Given calls running in four threads while a fifth switches between "every email call fails" and off
    injector, sender = FaultInjector(), FakeSender()
    failing = FaultPlan(channels={Channel.EMAIL: ChannelFaults(transient_rate=1.0)})
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def call(start: int) -> None:
        for n in range(start, start + 500):
            result = outcome(injector, sender, job_for(job, n))
            with lock:
                outcomes[result] += 1

    workers = [threading.Thread(target=call, args=(i * 1000,)) for i in range(4)]
    for worker in workers:
        worker.start()
    # When the plan flips a thousand times during the calls
    for flip in range(1000):
        injector.plan = failing if flip % 2 == 0 else None
    for worker in workers:
        worker.join(30)

    # Then every call either failed as the plan says or was sent, and the counts agree with what happened
    assert set(outcomes) <= {"sent", "transient"} and sum(outcomes.values()) == 2000
    assert injector.counts().channels[Channel.EMAIL].transient == outcomes["transient"]
    assert len(sender.sent) == outcomes["sent"]
