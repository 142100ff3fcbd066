"""`.herald-local/stack.json`: where a running local stack says how to reach it, for `herald` and scripts.

Written once the stack serves, readable only by its owner (it holds the API key and the control
token), removed when the stack stops cleanly. A stack that died leaves it behind: `running()`
tells a live one from a stale one by its process and its control endpoint.

This module imports nothing of Herald's functions: the CLI reads it without loading them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import requests
from pydantic import BaseModel, Field

REPO = Path(__file__).resolve().parents[1]
# The state directory of the local stack (git-ignored); the emulator keeps its own under state/.
DEFAULT_PATH = REPO / ".herald-local" / "stack.json"
ENVIRONMENT_VARIABLE = "HERALD_STACK_FILE"  # overrides DEFAULT_PATH, for the CLI and the stack alike
CONTROL_TOKEN_HEADER = "x-herald-control-token"


class FunctionEntry(BaseModel):
    handler: str = Field(description="module.function, as the template's Handler")
    timeout: int
    environment: dict[str, str] = Field(description="The function's variables, resolved against this stack.")


class StackFile(BaseModel):
    version: int = 1
    pid: int
    started_at: float
    api_url: str
    api_key: str
    region: str
    endpoints: dict[str, str] = Field(description="Per AWS service, the endpoint serving it (moto, LocalStack).")
    control_url: str = Field(description="The control endpoint: faults, collected metrics (127.0.0.1 only).")
    control_token: str = Field(description=f"What the control endpoint wants in {CONTROL_TOKEN_HEADER}.")
    functions: dict[str, FunctionEntry]

    def endpoint_variables(self) -> dict[str, str]:
        """The AWS_ENDPOINT_URL_<SERVICE> variables that point boto3 at this stack, one per service."""
        return {f"AWS_ENDPOINT_URL_{service.upper()}": url for service, url in self.endpoints.items()}


def default_path() -> Path:
    return Path(os.environ.get(ENVIRONMENT_VARIABLE) or DEFAULT_PATH)


def write(path: Path, stack: StackFile) -> None:
    """Atomically, mode 0600: a reader never sees half a file, nobody else reads the key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".stack-", suffix=".json")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(stack.model_dump_json(indent=2))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(path: Path) -> StackFile:
    return StackFile.model_validate_json(path.read_text())


def remove(path: Path, pid: int) -> None:
    """Removes the file if it is still this process's (another stack may have taken the path since)."""
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def running(path: Path) -> StackFile | None:
    """The stack the file describes, if it still runs: its process lives and its control endpoint answers."""
    try:
        stack = read(path)
    except (OSError, ValueError):
        return None
    try:
        os.kill(stack.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    try:
        answer = requests.get(
            f"{stack.control_url}/health", headers={CONTROL_TOKEN_HEADER: stack.control_token}, timeout=2
        )
    except requests.RequestException:
        return None
    return stack if answer.ok else None
