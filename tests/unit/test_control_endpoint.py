"""The local stack's control endpoint over HTTP: its token, the fault plan at run time, the collected metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from herald.models.domain import Channel
from herald_local.control import ControlEndpoint
from herald_local.faults import FaultInjector
from herald_local.metrics import EmfCollector
from herald_local.stack_file import CONTROL_TOKEN_HEADER
from tests.unit.test_local_metrics import written


class Control:
    def __init__(self, endpoint: ControlEndpoint, changes: list[str]):
        self.endpoint = endpoint
        self.changes = changes
        self.http = requests.Session()
        self.http.headers[CONTROL_TOKEN_HEADER] = endpoint.token

    def __call__(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return self.http.request(method, f"{self.endpoint.url}{path}", timeout=10, **kwargs)


@pytest.fixture
def control() -> Iterator[Control]:
    changes: list[str] = []
    endpoint = ControlEndpoint(FaultInjector(), EmfCollector(), port=0, on_change=changes.append)
    endpoint.start()
    try:
        yield Control(endpoint, changes)
    finally:
        endpoint.stop()


def test_it_listens_on_the_loopback_address_only(control):
    # Given a started endpoint, Then its URL is on 127.0.0.1
    assert control.endpoint.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_request_without_the_token_is_refused_and_changes_nothing(control, token):
    # Given a request without the stack file's token, or with another
    headers = {CONTROL_TOKEN_HEADER: token} if token else {}

    # When it asks to switch faults on
    answer = requests.put(
        f"{control.endpoint.url}/faults", json={"default": {"transient_rate": 1}}, headers=headers, timeout=10
    )

    # Then it is refused and no plan is in force
    assert answer.status_code == 403
    assert control.endpoint.faults.plan is None


def test_faults_switch_on_and_off_while_it_runs(control):
    # Given no plan
    assert control("GET", "/faults").json()["plan"] is None

    # When a plan failing email transiently is put
    answer = control("PUT", "/faults", json={"seed": 3, "channels": {"email": {"transient_rate": 0.5}}})

    # Then the injector has it, the answer shows it, and the stack says so in its output
    assert answer.status_code == 200
    assert answer.json()["plan"] == {"seed": 3, "channels": {"email": {"transient_rate": 0.5}}}
    plan = control.endpoint.faults.plan
    assert plan is not None and plan.for_channel(Channel.EMAIL).transient_rate == 0.5
    assert control.changes[-1].startswith("faults ON")

    # When it is deleted, Then faults are off
    assert control("DELETE", "/faults").json()["plan"] is None
    assert control.endpoint.faults.plan is None and control.changes[-1] == "faults OFF"


def test_an_invalid_plan_is_refused_naming_the_field_and_the_plan_in_force_stays(control):
    # Given a plan in force
    control("PUT", "/faults", json={"default": {"transient_rate": 0.1}})

    # When a plan with a rate over 1 is put, and then a body that is not JSON
    invalid = control("PUT", "/faults", json={"channels": {"sms": {"permanent_rate": 2}}})
    broken = control("PUT", "/faults", data=b"{oops")

    # Then they are refused with the fields at fault, and the first plan still holds
    assert invalid.status_code == 422
    assert [e["field"] for e in invalid.json()["errors"]] == ["channels.sms.permanent_rate"]
    assert broken.status_code == 400
    plan = control.endpoint.faults.plan
    assert plan is not None and plan.default.transient_rate == 0.1


def test_metrics_are_served_from_a_position(control):
    # Given two documents collected
    for line in written(("DeliveriesSent", 1, {"channel": "sms", "priority": "high"})) * 2:
        control.endpoint.metrics.collect("DeliverHighFunction", line)

    # When they are read from the start and after the first
    everything = control("GET", "/metrics").json()
    later = control("GET", "/metrics?since=1").json()

    # Then each answer has its documents and the last position
    assert [r["seq"] for r in everything["records"]] == [1, 2] and everything["last"] == 2
    assert [r["seq"] for r in later["records"]] == [2]
    assert control("GET", "/metrics?since=x").status_code == 422


def test_unknown_routes_and_methods_are_said_to_be_so(control):
    assert control("GET", "/users/ada/devices").status_code == 404
    assert control("POST", "/faults").status_code == 405
