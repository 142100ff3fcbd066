"""A Lambda handler for the local Lambda's tests: a Powertools REST resolver whose one route waits at
the gate its dependencies hold, then answers with the request it reads back from the resolver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayRestResolver


class Gate(Protocol):
    def wait(self) -> Any: ...


class OpenGate:
    def wait(self) -> None:
        pass


def dependencies_from(environ: Mapping[str, str]) -> dict[str, Any]:
    return {"gate": OpenGate(), "environment": dict(environ)}


app = APIGatewayRestResolver()


@app.get("/echo/<word>")
def echo(word: str) -> dict[str, Any]:
    app.context["dependencies"]["gate"].wait()
    # Read after the wait, while other requests are inside other containers' resolvers
    return {"word": word, "path": app.current_event.path, "request_id": app.lambda_context.aws_request_id}


def lambda_handler(event: dict[str, Any], context: Any, dependencies: dict[str, Any]) -> dict[str, Any]:
    app.append_context(dependencies=dependencies)
    return app.resolve(event, context)
