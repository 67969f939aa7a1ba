"""One process at a time in a run folder: ``run.lock``, kept fresh by a heartbeat.

``train`` holds ``<run folder>/run.lock`` from before it decides whether to start or resume
until it returns (finished, failed or interrupted). Without it, a second process in the same
folder (the same command run twice with a fixed ``hydra.run.dir``, a sweep launched twice
into one folder, ``resume=<folder>`` on a run that is still going, a requeued job whose first
copy still runs) would resume the run too, and the two would overwrite each other's
checkpoints and results.

The lock file names its holder (host, pid, a random token) and the time of its last
heartbeat; a thread of the holder rewrites it every ``heartbeat_s`` seconds. Another process
that finds it:

- takes it over at once if the holder is a process that no longer exists on this host (and
  in this pid namespace: containers);
- otherwise watches it: a heartbeat that moves means the holder is alive, and the process
  stops with a message that names the holder; a heartbeat that does not move for two
  heartbeats and is older than ``stale_after_s`` (by the holder's clock), or does not move for
  ``stale_after_s`` of watching (clocks of two nodes may differ), means the holder died
  without releasing it (killed, or its node lost), and the lock is taken over with a warning.
  A requeued cluster job on another node therefore waits between two heartbeats and about
  ``stale_after_s`` for its killed first copy's lock to go stale.

Taking over renames the stale file away (``run.lock.stale-<token>``, kept as a record) and
creates a new one; two processes taking over at once cannot both succeed, because creation
fails when the name exists.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from mitoseg.errors import InputError

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
HEARTBEAT_S = 20.0
STALE_AFTER_S = 180.0


class RunFolderBusy(InputError):
    """Another live process holds the run folder."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def pid_namespace() -> str:
    """This process' pid namespace ('' where /proc has none): two containers on one host may
    share a host name but not their pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def read_holder(path: Path) -> dict[str, Any] | None:
    """The lock file's record, None if there is none; an unreadable one counts from its mtime."""
    try:
        text = path.read_text()
        stamp = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
        if not isinstance(holder, dict) or "heartbeat" not in holder:
            raise ValueError("not a lock record")
        return holder
    except ValueError:
        return {"token": None, "host": "?", "pid": -1, "heartbeat": stamp, "unreadable": True}


def _describe(holder: dict[str, Any], now: float) -> str:
    return (f"process {holder.get('pid')} on {holder.get('host')} (last heartbeat "
            f"{now - float(holder['heartbeat']):.0f} s ago)")


class RunLock:
    """Hold ``run_dir/run.lock`` while a run writes there (a context manager).

    Args:
        run_dir: the run folder (created if missing).
        heartbeat_s: seconds between heartbeats.
        stale_after_s: a heartbeat older than this means its holder is gone; also how long a
            newcomer watches a lock before it decides (at least 3 heartbeats).
        clock, sleep: injectable time source and wait (tests).
    """

    def __init__(self, run_dir: str | Path, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not heartbeat_s > 0 or stale_after_s < 3 * heartbeat_s:
            raise ValueError(f"RunLock: need heartbeat_s > 0 and stale_after_s >= 3 x "
                             f"heartbeat_s, got {heartbeat_s} and {stale_after_s}")
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.heartbeat_s, self.stale_after_s = float(heartbeat_s), float(stale_after_s)
        self.clock, self.sleep = clock, sleep
        self.token = secrets.token_hex(8)
        self.host, self.pid, self.namespace = socket.gethostname(), os.getpid(), pid_namespace()
        self.started: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self) -> dict[str, Any]:
        return {"token": self.token, "host": self.host, "pid": self.pid,
                "pid_namespace": self.namespace, "started": self.started,
                "heartbeat": self.clock()}

    def _temporary(self) -> str:
        handle, temporary = tempfile.mkstemp(dir=self.run_dir, prefix=f".{LOCK_NAME}.",
                                             suffix=".tmp")
        with os.fdopen(handle, "w") as stream:
            json.dump(self.record(), stream)
        return temporary

    def _create(self) -> bool:
        """Create the lock file whole (hard link of a written file); False if it exists."""
        temporary = self._temporary()
        try:
            os.link(temporary, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)

    def _take_over(self, stale: dict[str, Any], reason: str) -> None:
        """Move the stale lock aside (the caller then creates its own); if what was moved is
        not the record judged stale (someone took over first), put it back."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = read_holder(aside)
        if moved is None or moved.get("token") != stale.get("token") \
                or moved.get("heartbeat") != stale.get("heartbeat"):
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.unlink(aside)
            return
        log.warning("run folder '%s': taking over the lock of %s: %s (the old record is "
                    "kept as %s)", self.run_dir, _describe(stale, self.clock()), reason,
                    aside.name)

    def acquire(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = self.clock()
        watched: dict[str, Any] | None = None  # the record being watched, and since when
        watched_since = 0.0
        while not self._create():
            holder = read_holder(self.path)
            if holder is None:
                continue  # released between the two calls
            now = self.clock()
            if holder.get("host") == self.host and holder.get("pid_namespace") == self.namespace \
                    and not pid_alive(holder.get("pid", -1)):
                self._take_over(holder, f"process {holder.get('pid')} no longer exists on "
                                "this host")
                continue
            if watched is not None and holder.get("heartbeat") != watched.get("heartbeat"):
                if holder.get("token") == watched.get("token"):  # it beats: alive
                    raise RunFolderBusy(self._busy_message(holder, now))
                watched = None  # another process took it over meanwhile: watch the new one
            if watched is None:
                watched, watched_since = holder, now
                log.warning("run folder '%s' is locked by %s; watching its heartbeat for up "
                            "to %.0f s", self.run_dir, _describe(holder, now), self.stale_after_s)
            # stale: no beat while watched for 2 heartbeats, and old by its clock or by ours
            # (its clock may differ from ours: a node's clock is not trusted alone)
            silent = now - watched_since
            if silent >= 2 * self.heartbeat_s and (
                    now - float(holder["heartbeat"]) > self.stale_after_s
                    or silent >= self.stale_after_s):
                age = max(silent, now - float(holder["heartbeat"]))
                self._take_over(holder, f"no heartbeat for {age:.0f} s")
                continue
            self.sleep(min(self.heartbeat_s / 4, 5.0))
        self._thread = threading.Thread(target=self._beat, name="mitoseg-run-lock", daemon=True)
        self._thread.start()
        return self

    def _busy_message(self, holder: dict[str, Any], now: float) -> str:
        return (f"run folder '{self.run_dir}' is in use by {_describe(holder, now)}: another "
                "process is training there and two would overwrite each other's checkpoints "
                "and results. Wait for it to finish, or choose another paths.output_dir; if "
                f"that process is gone, delete '{self.path}'.")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            holder = read_holder(self.path)
            if holder is None or holder.get("token") != self.token:
                log.error("run folder '%s': the lock was taken over by %s while this run was "
                          "still going (a heartbeat came too late); results may be overwritten",
                          self.run_dir, "nobody" if holder is None else
                          _describe(holder, self.clock()))
                return
            temporary = self._temporary()
            os.replace(temporary, self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        holder = read_holder(self.path)
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
