"""API Gateway (REST, proxy integration), in-process: routes, API key, throttling, proxy events."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from herald_local.functions import LocalFunction
from herald_local.loopback import LoopbackServer
from herald_local.template import RouteSpec

MAX_PAYLOAD = 10 * 1024 * 1024  # API Gateway's limit


@dataclass
class Route:
    spec: RouteSpec
    pattern: re.Pattern[str]
    function: LocalFunction


def compile_path(path: str) -> re.Pattern[str]:
    regex = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("+}"):
            regex += f"(?P<{part[1:-2]}>.+)"
        elif part.startswith("{"):
            regex += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(f"^{regex}$")


class TokenBucket:
    """A usage plan's throttle: `rate` requests per second, bursts of `burst`."""

    def __init__(self, rate: float, burst: int):
        self._rate, self._burst = rate, burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class ApiGateway:
    def __init__(
        self,
        routes: list[tuple[RouteSpec, LocalFunction]],
        api_key: str,
        stage: str,
        rate_limit: float | None = None,
        burst_limit: int | None = None,
        port: int = 0,
        arriving: Callable[[str, str, bytes], AbstractContextManager[None]] | None = None,
    ):
        self.routes = [Route(spec, compile_path(spec.path), function) for spec, function in routes]
        # told of each request let in (method, path, body); its function runs inside the context it answers
        self._arriving = arriving
        self.api_key = api_key
        self.stage = stage
        self._bucket = TokenBucket(rate_limit, burst_limit or 1) if rate_limit else None
        gateway = self

        class Handler(_ProxyHandler):
            api = gateway

        self._server = LoopbackServer(port, Handler, name="api-gateway")

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        split = urlsplit(raw_path)
        path = unquote(split.path)
        if path.startswith(f"/{self.stage}/"):
            path = path[len(self.stage) + 1 :]
        route, parameters = self._match(method, path)
        if route is None:
            return _json(403, {"message": "Missing Authentication Token"})
        lowered = {name.lower(): value for name, value in headers}
        if route.spec.api_key_required and lowered.get("x-api-key") != self.api_key:
            return _json(403, {"message": "Forbidden"})
        if self._bucket and not self._bucket.take():
            return _json(429, {"message": "Too Many Requests"})
        if len(body) > MAX_PAYLOAD:
            return _json(413, {"message": "Request Too Long"})
        arriving = self._arriving(method, path, body) if self._arriving is not None else nullcontext()
        event = self._event(route, method, path, split.query, headers, body, parameters, source_ip)
        try:
            with arriving:
                response = route.function.invoke(event)
        except Exception:
            return _json(502, {"message": "Internal server error"})
        return _proxy_response(response)

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.spec.method in (method, "ANY"):
                return route, found.groupdict()
        return None, {}

    def _event(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        parameters: dict[str, str],
        source_ip: str,
    ) -> dict[str, Any]:
        multi_headers: dict[str, list[str]] = {}
        for name, value in headers:
            multi_headers.setdefault(name, []).append(value)
        multi_query = parse_qs(query, keep_blank_values=True)
        try:
            text, encoded = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        now = time.time()
        return {
            "resource": route.spec.path,
            "path": path,
            "httpMethod": method,
            "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": parameters or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "local",
                "resourceId": "local",
                "resourcePath": route.spec.path,
                "httpMethod": method,
                "path": f"/{self.stage}{path}",
                "stage": self.stage,
                "requestId": str(uuid.uuid4()),
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "requestTimeEpoch": int(now * 1000),
                "protocol": "HTTP/1.1",
                "domainName": "127.0.0.1",
                "identity": {
                    "apiKey": next((v for n, v in headers if n.lower() == "x-api-key"), None),
                    "sourceIp": source_ip,
                    "userAgent": next((v for n, v in headers if n.lower() == "user-agent"), None),
                },
            },
            "body": text if body else None,
            "isBase64Encoded": encoded,
        }


def _json(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps(body).encode()


def _proxy_response(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    if not isinstance(response, dict) or "statusCode" not in response:
        return _json(502, {"message": "Internal server error"})
    headers: list[tuple[str, str]] = []
    for name, value in (response.get("headers") or {}).items():
        headers.append((name, str(value)))
    for name, values in (response.get("multiValueHeaders") or {}).items():
        if not any(existing.lower() == name.lower() for existing, _ in headers):
            headers.extend((name, str(value)) for value in values)
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()
    return int(response["statusCode"]), headers, raw


class _ProxyHandler(BaseHTTPRequestHandler):
    api: ApiGateway
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD:
            status, headers, body = _json(413, {"message": "Request Too Long"})
            self.close_connection = True
        else:
            body_in = self.rfile.read(length) if length else b""
            status, headers, body = self.api.handle(
                self.command, self.path, list(self.headers.items()), body_in, self.client_address[0]
            )
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in {"content-length", "connection"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...) reaches the routing too, as on API Gateway: 403, never a 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        pass
