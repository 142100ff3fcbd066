"""The local stack's control endpoint: fault injection on and off at run time, the metrics collected, health.

It listens on 127.0.0.1 only, on a port of its own, so nothing of it is reachable through the
emulated API Gateway, whose routes stay exactly the template's. Every request carries the token
the stack wrote into its stack file (header `x-herald-control-token`): another local program, or a
web page the developer has open, cannot switch faults on without reading that file.

| route | does |
|---|---|
| `GET /health` | `{"status": "running"}` |
| `GET /faults` | the plan in force (`null`: off) and what the injector did so far |
| `PUT /faults` | body: a FaultPlan (docs/local-stack.md); in force from the next provider call on |
| `DELETE /faults` | off: every call goes straight to its provider again |
| `GET /metrics?since=N` | the EMF documents the functions wrote after the N-th, each with its function |
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from herald_local.faults import FaultInjector, FaultPlan
from herald_local.loopback import LoopbackServer
from herald_local.metrics import EmfCollector
from herald_local.stack_file import CONTROL_TOKEN_HEADER

MAX_BODY = 64 * 1024
Answer = tuple[int, dict[str, Any]]


class ControlEndpoint:
    def __init__(
        self,
        faults: FaultInjector,
        metrics: EmfCollector,
        port: int = 0,
        token: str | None = None,
        on_change: Callable[[str], None] | None = None,
    ):
        self.faults = faults
        self.metrics = metrics
        self.token = token or secrets.token_urlsafe(24)
        self._on_change = on_change or (lambda _: None)
        endpoint = self

        class Handler(_ControlHandler):
            control = endpoint

        self._server = LoopbackServer(port, Handler, name="herald-control")

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def handle(self, method: str, target: str, token: str | None, body: bytes) -> Answer:
        if token is None or not hmac.compare_digest(token.encode(), self.token.encode()):
            return 403, {"message": f"missing or wrong {CONTROL_TOKEN_HEADER}: it is in the stack file"}
        split = urlsplit(target)
        route = {
            ("GET", "/health"): lambda: (200, {"status": "running"}),
            ("GET", "/faults"): self._faults,
            ("PUT", "/faults"): lambda: self._set_faults(body),
            ("DELETE", "/faults"): self._clear_faults,
            ("GET", "/metrics"): lambda: self._metrics(parse_qs(split.query)),
        }.get((method, split.path))
        if route is not None:
            return route()
        if split.path in {"/health", "/faults", "/metrics"}:
            return 405, {"message": f"{method} is not a method of {split.path}"}
        return 404, {"message": f"no control route {split.path}"}

    def _faults(self) -> Answer:
        plan = self.faults.plan
        return 200, {
            "plan": plan.model_dump(mode="json", exclude_defaults=True) if plan else None,
            "counts": self.faults.counts().model_dump(mode="json"),
        }

    def _set_faults(self, body: bytes) -> Answer:
        try:
            plan = FaultPlan.model_validate_json(body or b"{}")
        except ValidationError as error:
            if any(detail["type"] == "json_invalid" for detail in error.errors()):
                return 400, {"message": "the body is not valid JSON", "errors": [{"field": "body", "message": ""}]}
            errors = [
                {"field": ".".join(str(part) for part in detail["loc"]) or "body", "message": detail["msg"]}
                for detail in error.errors()
            ]
            return 422, {"message": "invalid fault plan", "errors": errors}
        self.faults.plan = plan
        self._on_change(f"faults ON: {plan.model_dump_json(exclude_defaults=True)}")
        return self._faults()

    def _clear_faults(self) -> Answer:
        self.faults.plan = None
        self._on_change("faults OFF")
        return self._faults()

    def _metrics(self, query: dict[str, list[str]]) -> Answer:
        since = query.get("since", ["0"])[-1]
        if not since.isdigit():
            return 422, {
                "message": "invalid since",
                "errors": [{"field": "since", "message": "must be a whole number"}],
            }
        records = self.metrics.records(int(since))
        last = records[-1].seq if records else int(since)
        return 200, {"records": [record.model_dump(mode="json") for record in records], "last": last}


class _ControlHandler(BaseHTTPRequestHandler):
    control: ControlEndpoint
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            status, answer = 413, {"message": f"the body is over {MAX_BODY} bytes"}
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            status, answer = self.control.handle(self.command, self.path, self.headers.get(CONTROL_TOKEN_HEADER), body)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_DELETE = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass
