"""Keeps the local stack's emulated AWS across restarts: moto's backends, pickled to disk while no request runs.

What moto holds is all of it: queues and their messages (in flight included, with their receive
counts and visibility), the topic and its subscriptions, the SNS platform applications and
endpoints, every table's items (devices, statuses, inbox, idempotency keys), the CloudFormation
stack, and what SES and SNS "sent". A snapshot is one consistent moment of all of that: it is
taken while the emulator's request gate is closed (herald_local/emulator.py), so no request is
half applied in it.

Snapshots are taken where moto's state lives (the emulator's own process, by default), every
`every` seconds while something changed (more rarely when a snapshot is slow: at most about a tenth
of the time is spent with the gate closed), and once more when the emulator stops. A kill -9 of the
stack's process closes its emulator process's pipe: that process takes its last snapshot and ends,
so nothing the emulator answered is lost. A kill -9 of the emulator itself (or of both, or a crash)
loses what changed since the last snapshot: everything of that last moment together, so the
emulated providers forget a send exactly when the queue forgets it was done.
"""

from __future__ import annotations

import copyreg
import fcntl
import io
import json
import logging
import os
import pickle
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from herald_local.endpoints import SERVICES

if TYPE_CHECKING:
    from herald_local.emulator import MotoServer

SNAPSHOT = "moto.pickle"
LOCK = "lock"
API_KEY = "api-key"
FORMAT = 1
GATE_TIMEOUT = 0.5  # seconds to wait for the requests in progress (slow on a busy machine) before trying later
BUSY_SHARE = 0.1  # at most this share of the time with the gate closed
FINAL_TRIES = 20  # times GATE_TIMEOUT, at most, for the last snapshot on a clean stop
# Seconds a stack starting on a folder waits for the emulator process of a stack that is gone (killed)
# to save its last snapshot and let go of the folder.
HANDOVER_SECONDS = 120

log = logging.getLogger("herald_local")


class StateError(Exception):
    """The saved state cannot be used; the message says why and what to do, in one line."""


# ---------------------------------------------------------------- pickling moto's backends


def _fresh_lock(lock: Any) -> tuple[Callable[[], Any], tuple[()]]:
    """A lock pickles as a new, released lock: no request holds one while the gate is closed."""
    return (threading.RLock if "RLock" in type(lock).__name__ else threading.Lock), ()


def _fresh_condition(condition: threading.Condition) -> tuple[Callable[[], Any], tuple[()]]:
    return threading.Condition, ()


def _live_backends(service: str, account: str | None) -> Any:
    from moto.backends import get_backend

    backends = get_backend(service)  # type: ignore[call-overload]
    return backends if account is None else backends[account]


def _registry(backends: Any) -> tuple[Callable[..., Any], tuple[str, str | None]]:
    # A reference to moto's registries of backends stays a reference to the live ones.
    return _live_backends, (backends.service_name, getattr(backends, "account_id", None))


def _reductions() -> dict[type, Callable[[Any], Any]]:
    """How the odd objects in moto's state pickle, by type (looked up in C: no Python call per object)."""
    from moto.core.base_backend import AccountSpecificBackend, BackendDict

    table: dict[type, Callable[[Any], Any]] = dict(copyreg.dispatch_table)
    # moto's SQS queues hold a threading.Condition; locks do not pickle, and need not.
    table[type(threading.Lock())] = _fresh_lock
    table[type(threading.RLock())] = _fresh_lock
    table[threading.Condition] = _fresh_condition
    table[BackendDict] = _registry
    table[AccountSpecificBackend] = _registry
    return table


def pickled(state: Any) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _reductions()
    pickler.dump(state)
    return buffer.getvalue()


def dump_backends(services: tuple[str, ...] = SERVICES) -> bytes:
    """Every account's and region's backend of these services, in one pickle (shared objects stay shared:
    the CloudFormation stack and the SQS backend hold the same queue)."""
    from moto.backends import get_backend

    state = {
        service: {account: dict(regions) for account, regions in get_backend(service).items()} for service in services
    }
    return pickled(state)


def restore_backends(data: bytes) -> None:
    """Puts pickled backends in place of moto's, before its server answers anything."""
    from moto.backends import get_backend

    state: dict[str, dict[str, dict[str, Any]]] = pickle.loads(data)
    for service, accounts in state.items():
        for account, regions in accounts.items():
            for region, backend in regions.items():
                get_backend(service)[account][region] = backend  # type: ignore[call-overload]


# ---------------------------------------------------------------- the folder


@dataclass(frozen=True)
class Restored:
    saved_at: str  # when the snapshot was taken (UTC, ISO 8601): the moment the state was read
    size: int  # bytes


class StateFolder:
    """`.herald-local/state/`: the snapshot, the API key, and a lock so two stacks never share it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock_file: IO[str] | None = None

    @property
    def snapshot(self) -> Path:
        return self.folder / SNAPSHOT

    def open(self, fresh: bool = False) -> None:
        """Takes the folder for this process; with `fresh`, discards what it holds."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock_file = (self.folder / LOCK).open("a+")
        if not _locked(lock_file):
            lock_file.seek(0)
            holder = lock_file.read().strip() or "another process"
            # A stack that was killed leaves its emulator process saving its last snapshot; the process
            # shares the stack's lock until it ends. Wait for that; a live stack's folder is refused at once.
            if not (holder.isdigit() and not _alive(int(holder)) and _locked(lock_file, HANDOVER_SECONDS)):
                lock_file.close()
                raise StateError(
                    f"{self.folder} is in use by another local stack (pid {holder}): stop it, or give this one "
                    "another folder with --state-dir"
                )
        lock_file.truncate(0)
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file
        if fresh:
            self.snapshot.unlink(missing_ok=True)

    @property
    def lock_fd(self) -> int:
        """The open lock: an emulator process given it keeps the folder taken until it has saved and ended."""
        assert self._lock_file is not None, "open() the folder first"
        return self._lock_file.fileno()

    def close(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def restore(self) -> Restored | None:
        """Loads the snapshot into moto, if there is one; None when the state starts empty."""
        try:
            raw = self.snapshot.read_bytes()
        except FileNotFoundError:
            return None
        header_line, _, data = raw.partition(b"\n")
        header = self._header(header_line)
        if header.get("format") != FORMAT or header.get("moto") != version("moto"):
            raise StateError(
                f"{self.snapshot} was saved by moto {header.get('moto')} (format {header.get('format')}); this is "
                f"moto {version('moto')}: start with --fresh to discard it"
            )
        try:
            restore_backends(data)
        except Exception as error:
            raise StateError(f"{self.snapshot} could not be loaded ({error!r}): start with --fresh") from None
        return Restored(saved_at=header.get("saved_at", "?"), size=len(raw))

    def taken_at(self) -> datetime | None:
        """When the kept snapshot was taken (every request answered before then is in it); None if there is none."""
        try:
            with self.snapshot.open("rb") as snapshot:
                header_line = snapshot.readline()
        except FileNotFoundError:
            return None
        return datetime.fromisoformat(self._header(header_line)["saved_at"])

    def _header(self, line: bytes) -> dict[str, Any]:
        try:
            header: dict[str, Any] = json.loads(line)
        except ValueError:
            raise StateError(f"{self.snapshot} is not a saved state: start with --fresh to discard it") from None
        return header

    def save(self, data: bytes, taken_at: datetime | None = None) -> None:
        """Writes a snapshot whole or not at all: a crash mid-write leaves the previous one. `taken_at`: when the
        state in `data` was read (now, if not given); the header's `saved_at`."""
        taken_at = taken_at or datetime.now(UTC)
        header = {"format": FORMAT, "moto": version("moto"), "saved_at": taken_at.isoformat()}
        partial = self.folder / f".{SNAPSHOT}.partial"
        with partial.open("wb") as out:
            out.write(json.dumps(header).encode() + b"\n")
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.snapshot)

    def api_key(self) -> str:
        """The key this folder's stack requires, made once: a restart keeps the clients' key working."""
        path = self.folder / API_KEY
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            key = ""
        if not key:
            key = secrets.token_urlsafe(24)
            path.write_text(key + "\n")
            path.chmod(0o600)
        return key


def _locked(lock_file: IO[str], patience: float = 0.0) -> bool:
    """Takes the folder's lock, trying for up to `patience` seconds; False if another holds it still."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


# ---------------------------------------------------------------- the snapshots


class Snapshotter:
    """Snapshots the emulator into its folder while it changes, and once more when stopped."""

    def __init__(self, server: MotoServer, folder: StateFolder, every: float = 1.0):
        self._server = server
        self._folder = folder
        self._every = every
        self._saved_changes = 0  # what the server did before this started (provisioning) is saved too
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-snapshots", daemon=True)
        self._save_lock = threading.Lock()
        self.snapshots = 0
        self.last_seconds = 0.0  # how long the gate was closed for the last snapshot

    def start(self) -> Snapshotter:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the periodic snapshots and takes a last one (when something changed)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        for _ in range(FINAL_TRIES):  # a request of a client still finishing: wait for it, bounded
            if self.snapshot():
                return
        log.warning("the local stack's last changes could not be saved: requests kept its emulator busy")

    def snapshot(self) -> bool:
        """Takes a snapshot now if something changed since the last; False if requests kept the gate busy."""
        application = self._server.application
        if application is None:
            return False
        with self._save_lock:
            if application.changes == self._saved_changes:
                return True
            started = time.perf_counter()
            with application.gate.closed(GATE_TIMEOUT) as quiet:
                if not quiet:
                    return False
                changes = application.changes
                taken_at = datetime.now(UTC)  # every request answered before now is in the dump
                data = dump_backends()
            self.last_seconds = time.perf_counter() - started
            self._folder.save(data, taken_at)
            self._saved_changes = changes
            self.snapshots += 1
            return True

    def _run(self) -> None:
        wait = self._every
        while not self._stop.wait(wait):
            try:
                self.snapshot()
            except Exception as error:  # a disk full, say: the stack goes on, and says so
                log.warning("could not save the local stack's state in %s: %r", self._folder.folder, error)
            wait = max(self._every, self.last_seconds / BUSY_SHARE)
