"""One process at a time trains in a run folder: ``run.lock``, kept fresh by a heartbeat.

``train`` holds ``<run folder>/run.lock`` from before it decides whether to start or resume
until it returns (finished, failed or interrupted). Without it, a second process in the same
folder (the same command run twice with a fixed ``hydra.run.dir``, a sweep launched twice
into one folder, ``resume=<folder>`` on a run that is still going, a requeued job whose first
copy still runs) would resume the run too, and the two would overwrite each other's
checkpoints and results.

The lock file names its holder (host, boot, pid namespace, pid, a random token) and the time
of its last heartbeat; a thread of the holder rewrites it every ``heartbeat_s`` seconds. A
process that finds it:

- takes it over at once if the holder is a process that no longer exists on this machine
  since its last boot (same host, boot id and pid namespace), or if the holder's machine has
  rebooted since;
- otherwise watches it: a heartbeat that moves means the holder is alive, and the process
  stops with a message that names the holder; a heartbeat that does not move for two
  heartbeats while its time stamp is over ``stale_after_s`` old on this process' clock, or
  does not move for ``stale_after_s`` of watching (two nodes' clocks may differ), means the
  holder died without releasing it (killed, or its node lost): it is taken over with a
  warning, and the old record is kept as ``run.lock.stale-<its token>``. A requeued cluster
  job on another node thus waits between two heartbeats and about ``stale_after_s``.

Every change of ``run.lock`` (creation, heartbeat, take-over, release) happens while holding
an exclusive ``flock`` on ``run.lock.guard`` (an empty file that stays; the kernel, or the
file server's lease, frees the flock when its process dies), so a change is always made on the
record it was decided on. Where the file system has no locks, the changes go unguarded, with
a warning. A holder whose heartbeat finds the lock no longer its own (it stalled for longer
than ``stale_after_s`` and was taken over) marks itself ``lost``; ``check()`` then raises
``RunLockLost``, which training calls after every batch and before the test and the result
files, so the run stops rather than go on writing beside the new holder.

Not covered: a run killed by SIGTERM outside Lightning's fit (e.g. during the test) leaves its
lock, which the rules above free (at once on the same machine); under a multi-node DDP launch
a refused rank 0 leaves the other ranks waiting for their process-group timeout; file systems
whose locks are local to a node (Lustre's ``localflock``) guard changes within a node only.
A ``RunLock`` is used once: make a new one to hold a folder again.
"""

from __future__ import annotations

import fcntl
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
from typing import Any, TypeVar

from mitoseg.errors import InputError

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
GUARD_NAME = "run.lock.guard"
HEARTBEAT_S = 20.0
STALE_AFTER_S = 180.0
BOOT_MARGIN_S = 60.0  # a record older than this machine's boot by this much is from before it
T = TypeVar("T")
_IN_PROCESS = threading.Lock()  # flock excludes processes; this, threads of one process


class RunFolderBusy(InputError):
    """Another live process holds the run folder."""

    label = "not run"


class RunLockLost(RunFolderBusy):
    """Another process took this run's lock over while it was still going."""

    label = "stopped"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_link_or_file(path: str, link: bool) -> str:
    try:
        return os.readlink(path) if link else Path(path).read_text().strip()
    except OSError:
        return ""


def boot_time() -> float | None:
    """When this machine booted (seconds since the epoch), from /proc/stat; None without it."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def machine_identity() -> dict[str, str]:
    """Host name, boot id (changes at every boot) and pid namespace ('' where /proc lacks
    them): a pid means something only where all three match (containers share host names,
    and every machine's root namespace has the same id)."""
    return {"host": socket.gethostname(),
            "boot_id": _read_link_or_file("/proc/sys/kernel/random/boot_id", link=False),
            "pid_namespace": _read_link_or_file("/proc/self/ns/pid", link=True)}


def read_holder(path: Path, attempts: int = 3) -> dict[str, Any] | None:
    """The lock file's record, None if there is none; an unreadable one counts from its mtime.
    Transient errors of shared file systems (a file replaced mid-read) are retried."""
    for attempt in range(attempts):
        try:
            raw = path.read_bytes()
            stamp = path.stat().st_mtime
            break
        except FileNotFoundError:
            return None
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    try:
        holder = json.loads(raw.decode("utf-8"))
        if not isinstance(holder, dict) or not isinstance(holder.get("heartbeat"), (int, float)):
            raise ValueError("not a lock record")
        return holder
    except ValueError:  # also a UnicodeDecodeError
        return {"token": None, "host": "?", "pid": -1, "heartbeat": stamp, "unreadable": True}


def live_holder(run_dir: str | Path, clock: Callable[[], float] = time.time
                ) -> dict[str, Any] | None:
    """The record of ``run_dir``'s lock when its holder may still be running, judged at a
    glance (no watching, for readers such as report.py): None when there is no lock, when
    ``RunLock``'s rules say its holder is gone (a dead process on this machine, a reboot
    since), or when its heartbeat is older than ``STALE_AFTER_S``."""
    try:
        holder = read_holder(Path(run_dir) / LOCK_NAME)
    except OSError:
        return None
    if holder is None or RunLock(run_dir)._holder_is_gone(holder):
        return None
    return holder if clock() - float(holder["heartbeat"]) <= STALE_AFTER_S else None


def describe_holder(holder: dict[str, Any], now: float) -> str:
    """'process 12 on node3 (last heartbeat 4 s ago)'."""
    return _describe(holder, now)


def _describe(holder: dict[str, Any], now: float) -> str:
    return (f"process {holder.get('pid')} on {holder.get('host')} (last heartbeat "
            f"{now - float(holder['heartbeat']):.0f} s ago)")


def _same_record(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return a is not None and b is not None and a.get("token") == b.get("token") \
        and a.get("heartbeat") == b.get("heartbeat")


class RunLock:
    """Hold ``run_dir/run.lock`` while a run trains there (a context manager).

    Args:
        run_dir: the run folder (created if missing).
        heartbeat_s: seconds between heartbeats.
        stale_after_s: a heartbeat older than this means its holder is gone; also how long a
            newcomer watches a silent lock at most (at least 3 heartbeats).
        clock: wall time (compared with the time stamps in lock files); monotonic: the time
            of watching; sleep: the wait. Injectable for tests.
    """

    def __init__(self, run_dir: str | Path, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not heartbeat_s > 0 or stale_after_s < 3 * heartbeat_s:
            raise ValueError(f"RunLock: need heartbeat_s > 0 and stale_after_s >= 3 x "
                             f"heartbeat_s, got {heartbeat_s} and {stale_after_s}")
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.guard = self.run_dir / GUARD_NAME
        self.heartbeat_s, self.stale_after_s = float(heartbeat_s), float(stale_after_s)
        self.clock, self.monotonic, self.sleep = clock, monotonic, sleep
        self.token = secrets.token_hex(8)
        self.machine, self.pid = machine_identity(), os.getpid()
        self.started: float | None = None
        self.lost = False  # set when another process took the lock over from this one
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the record and its file -----------------------------------------------------------

    def record(self) -> dict[str, Any]:
        return {"token": self.token, **self.machine, "pid": self.pid,
                "started": self.started, "heartbeat": self.clock()}

    def _write(self, path: Path, record: dict[str, Any]) -> None:
        """Replace ``path`` by ``record`` whole (readers never see half a file)."""
        handle, temporary = tempfile.mkstemp(dir=self.run_dir, prefix=f".{path.name}.",
                                             suffix=".tmp")
        try:
            os.chmod(temporary, 0o644)  # readable by the group's other users
            with os.fdopen(handle, "w") as stream:
                json.dump(record, stream)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _guarded(self, action: Callable[[], T]) -> T:
        """Run ``action`` holding the guard (see the module docstring)."""
        with _IN_PROCESS:
            handle = os.open(self.guard, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                except OSError as error:  # a file system without locks
                    log.warning("run folder '%s': no file locks here (%s); changes of %s are "
                                "not guarded against a simultaneous change by another node",
                                self.run_dir, error, LOCK_NAME)
                return action()
            finally:
                os.close(handle)  # closing frees the flock

    # -- acquiring --------------------------------------------------------------------------

    def _try_take(self, stale: dict[str, Any] | None, reason: str = "") -> bool:
        """Under the guard: create the lock if there is none, or replace ``stale`` if it is
        still the record there; False if the file holds anything else."""
        def action() -> bool:
            current = read_holder(self.path)
            if current is not None and not (stale is not None and _same_record(current, stale)):
                return False
            if current is not None:
                aside = self.path.with_name(f"{LOCK_NAME}.stale-{current.get('token')}")
                self._write(aside, current)
                log.warning("run folder '%s': taking over the lock of %s: %s (its record is "
                            "kept as %s)", self.run_dir, _describe(current, self.clock()),
                            reason, aside.name)
            self._write(self.path, self.record())
            return True
        return self._guarded(action)

    def _holder_is_gone(self, holder: dict[str, Any]) -> str | None:
        """Why the holder cannot be alive, judged on this machine; None if it may be."""
        if holder.get("host") != self.machine["host"] or holder.get("unreadable"):
            return None
        booted = boot_time()
        if holder.get("boot_id") and self.machine["boot_id"] \
                and holder["boot_id"] != self.machine["boot_id"] and booted is not None \
                and float(holder["heartbeat"]) < booted - BOOT_MARGIN_S:
            # another boot, and a heartbeat from before this one (two live machines may share
            # a host name: cloned machines, containers given one name)
            return "this machine has rebooted since"
        if holder.get("boot_id") == self.machine["boot_id"] \
                and holder.get("pid_namespace") == self.machine["pid_namespace"] \
                and not pid_alive(holder.get("pid", -1)):
            return f"process {holder.get('pid')} no longer exists on this machine"
        return None

    def acquire(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = self.clock()
        watched: dict[str, Any] | None = None
        since = 0.0
        while not self._try_take(None):  # (False: someone holds it; True ends the loop)
            holder = read_holder(self.path)
            if holder is None:
                continue  # released meanwhile
            gone = self._holder_is_gone(holder)
            if gone:
                if self._try_take(holder, gone):
                    break
                continue
            if watched is not None and not _same_record(holder, watched):
                if holder.get("token") == watched.get("token"):  # it beats: alive
                    raise RunFolderBusy(self._busy_message(holder))
                watched = None  # another process took it over meanwhile: watch that one
            if watched is None:
                watched, since = holder, self.monotonic()
                log.warning("run folder '%s' is locked by %s; watching its heartbeat for up "
                            "to %.0f s", self.run_dir, _describe(holder, self.clock()),
                            self.stale_after_s)
            silent = self.monotonic() - since
            age = self.clock() - float(holder["heartbeat"])
            if silent >= 2 * self.heartbeat_s and (age > self.stale_after_s
                                                   or silent >= self.stale_after_s):
                if self._try_take(holder, f"no heartbeat for {max(silent, age):.0f} s"):
                    break
                continue
            self.sleep(min(self.heartbeat_s / 4, 5.0))
        try:
            self._thread = threading.Thread(target=self._beat, name="mitoseg-run-lock",
                                            daemon=True)
            self._thread.start()
        except BaseException:
            self.release()
            raise
        return self

    def _busy_message(self, holder: dict[str, Any]) -> str:
        return (f"run folder '{self.run_dir}' is in use by {_describe(holder, self.clock())}: "
                "another process is training there and two would overwrite each other's "
                "checkpoints and results. Wait for it to finish, or choose another "
                f"paths.output_dir; if that process is gone, delete '{self.path}'.")

    # -- holding ----------------------------------------------------------------------------

    def _beat_once(self) -> bool:
        """Rewrite the heartbeat under the guard; False when the lock is no longer ours."""
        def action() -> bool:
            current = read_holder(self.path)
            if current is not None and current.get("token") != self.token:
                return False
            if current is None and self.path.with_name(
                    f"{LOCK_NAME}.stale-{self.token}").exists():
                return False  # taken over, and the taker has already released it
            self._write(self.path, self.record())  # also restores a lock deleted by hand
            return True
        return self._guarded(action)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                ours = self._beat_once()
            except Exception as error:  # a full disk, a shared file system's hiccup: next beat
                log.warning("run folder '%s': heartbeat not written (%s: %s); trying again in "
                            "%.0f s", self.run_dir, type(error).__name__, error, self.heartbeat_s)
                continue
            if not ours:
                self.lost = True
                log.error("run folder '%s': another process took this run's lock over (this "
                          "process missed its heartbeats for over %.0f s); this run stops at "
                          "its next check", self.run_dir, self.stale_after_s)
                return

    def check(self) -> None:
        """Raise ``RunLockLost`` if another process took the lock over (training calls this
        after every batch and before writing results)."""
        if self.lost:
            raise RunLockLost(f"run folder '{self.run_dir}': another process took this run's "
                              "lock over while it was going (it missed its heartbeats for "
                              f"over {self.stale_after_s:.0f} s); this run stopped so that the "
                              "two do not overwrite each other's checkpoints and results")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

        def action() -> None:
            current = read_holder(self.path)
            if current is not None and current.get("token") == self.token:
                self.path.unlink()
        try:
            self._guarded(action)
        except OSError as error:
            log.warning("run folder '%s': could not remove %s (%s); the next run here takes "
                        "it over", self.run_dir, LOCK_NAME, error)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
