"""One process at a time in a run folder: a second one stops while the first is alive, and a
lock whose holder is gone is taken over (what a requeued cluster job needs)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mitoseg.runs.lock import (
    LOCK_NAME,
    RunFolderBusy,
    RunLock,
    RunLockLost,
    boot_time,
    machine_identity,
    read_holder,
)


def write_record(folder: Path, **fields) -> dict:
    record = {"token": "theirs", **machine_identity(), "pid": 1, "started": 0.0,
              "heartbeat": time.time()} | fields
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps(record))
    return record


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


class FakeTime:
    """A clock that moves only when the lock sleeps."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def options(self) -> dict:
        return {"clock": self.clock, "monotonic": self.clock, "sleep": self.sleep}


def test_the_lock_names_its_holder_and_goes_when_released(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with RunLock(folder) as lock:
        record = json.loads((folder / LOCK_NAME).read_text())
        assert record["token"] == lock.token and record["pid"] == lock.pid
        assert record["host"] == socket.gethostname()
    assert not (folder / LOCK_NAME).exists()


def test_a_second_process_stops_while_the_first_beats(tmp_path: Path) -> None:
    with RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=5.0) as first:
        started = time.monotonic()
        with pytest.raises(RunFolderBusy, match=rf"in use by process {first.pid} .*paths.output_dir"):
            RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=5.0).acquire()
        assert time.monotonic() - started < 4.0  # decided by the heartbeat, not the timeout
        assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == first.token


def test_the_heartbeat_moves(tmp_path: Path) -> None:
    with RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=1.0):
        before = json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"] > before


def test_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path: Path, caplog) -> None:
    write_record(tmp_path, pid=dead_pid())
    fake = FakeTime()
    with caplog.at_level(logging.WARNING), RunLock(tmp_path, **fake.options()) as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.token
        assert fake.now == 1000.0  # no waiting
    assert "no longer exists on this machine" in caplog.text
    [aside] = tmp_path.glob(f"{LOCK_NAME}.stale-*")
    assert json.loads(aside.read_text())["token"] == "theirs"  # kept as a record


def test_a_dead_pid_in_another_pid_namespace_is_not_trusted(tmp_path: Path) -> None:
    """Another container on this host: its pid means nothing here, so the heartbeat decides."""
    fake = FakeTime()
    write_record(tmp_path, pid=dead_pid(), pid_namespace="pid:[1]", heartbeat=fake.now)
    with RunLock(tmp_path, heartbeat_s=20, stale_after_s=180, **fake.options()):
        assert fake.now - 1000.0 >= 180  # taken over only after watching it stay silent


def test_a_silent_lock_from_another_node_is_taken_over_after_two_heartbeats(tmp_path) -> None:
    fake = FakeTime()
    write_record(tmp_path, host="node-that-died", heartbeat=fake.now - 3600)
    with RunLock(tmp_path, heartbeat_s=20, stale_after_s=180, **fake.options()) as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == lock.token
        assert 40 <= fake.now - 1000.0 < 60


def test_a_lock_fresh_by_another_nodes_clock_goes_stale_by_ours(tmp_path: Path) -> None:
    """A node whose clock runs ahead writes heartbeats in our future; silence for
    stale_after_s of watching still frees the folder."""
    fake = FakeTime()
    write_record(tmp_path, host="node-ahead", heartbeat=fake.now + 10_000)
    with RunLock(tmp_path, heartbeat_s=20, stale_after_s=180, **fake.options()):
        assert 180 <= fake.now - 1000.0 < 200


def race(folder: Path, contenders: int = 6, hold_s: float = 0.5) -> list[str]:
    """Start ``contenders`` lock holders at once (threads: one RunLock each) on ``folder``;
    each winner holds it ``hold_s`` (longer than the others need to see it beat). Sorted
    outcomes: 'busy', 'held', or 'lost' for a holder that found its lock taken over."""
    outcomes: list[str] = []
    barrier = threading.Barrier(contenders)

    def contend() -> None:
        lock = RunLock(folder, heartbeat_s=0.05, stale_after_s=5.0)
        barrier.wait()
        try:
            lock.acquire()
        except RunFolderBusy:
            outcomes.append("busy")
            return
        time.sleep(hold_s)
        outcomes.append("lost" if lock.lost else "held")
        lock.release()

    threads = [threading.Thread(target=contend) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def test_many_processes_racing_for_a_new_folder_leave_one_holder(tmp_path: Path) -> None:
    assert race(tmp_path) == ["busy"] * 5 + ["held"]


def test_many_processes_taking_over_a_dead_holders_lock_leave_one_holder(tmp_path) -> None:
    """The take-over re-reads the record under the guard: a taker acting on a record another
    taker has already replaced neither moves nor deletes the new holder's lock."""
    gone = dead_pid()
    for trial in range(15):
        folder = tmp_path / str(trial)
        write_record(folder, pid=gone)
        assert race(folder, hold_s=0.4) == ["busy"] * 5 + ["held"], trial


def test_a_late_heartbeat_does_not_undo_a_take_over_and_stops_its_run(tmp_path) -> None:
    stalled = RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=0.3).acquire()
    stalled._stop.set()  # a process that hangs: no heartbeat any more
    stalled._thread.join()
    newcomer = RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=0.3).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == newcomer.token
    assert stalled._beat_once() is False  # the late heartbeat finds it is not its lock
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == newcomer.token
    stalled._stop.clear()
    beat = threading.Thread(target=stalled._beat)
    beat.start()
    beat.join(timeout=5)
    assert stalled.lost
    with pytest.raises(RunLockLost, match="took this run's lock over"):
        stalled.check()
    newcomer.release()
    stalled.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_stalled_holder_does_not_retake_a_lock_its_taker_has_released(tmp_path) -> None:
    stalled = RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=0.3).acquire()
    stalled._stop.set()
    stalled._thread.join()
    with RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=0.3):
        pass  # took it over, trained, released
    assert not (tmp_path / LOCK_NAME).exists()
    assert stalled._beat_once() is False and not (tmp_path / LOCK_NAME).exists()


def test_another_boot_id_frees_the_lock_only_for_a_heartbeat_from_before_this_boot(tmp_path):
    """Two live machines may share a host name; only a record older than this boot is known
    to be dead."""
    booted = boot_time()
    if booted is None or not machine_identity()["boot_id"]:
        pytest.skip("no /proc/stat btime or boot_id here")
    fake = FakeTime(now=time.time())
    write_record(tmp_path / "before", boot_id="another-boot", heartbeat=booted - 3600)
    with RunLock(tmp_path / "before", **fake.options()):
        assert fake.now == pytest.approx(time.time(), abs=60)  # at once
    write_record(tmp_path / "live", boot_id="another-boot", heartbeat=fake.now)
    started = fake.now
    with RunLock(tmp_path / "live", heartbeat_s=20, stale_after_s=180, **fake.options()):
        assert fake.now - started >= 180  # watched like any other node's lock


def test_a_garbled_lock_file_is_read_as_unreadable_not_a_crash(tmp_path) -> None:
    (tmp_path / LOCK_NAME).write_bytes(b"\xff\xfe{")
    holder = read_holder(tmp_path / LOCK_NAME)
    assert holder["unreadable"] and holder["heartbeat"] > 0


def test_a_failed_heartbeat_is_retried(tmp_path, monkeypatch) -> None:
    lock = RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=1.0).acquire()
    real_write, failures = lock._write, []

    def flaky(path, record):
        if len(failures) < 2:
            failures.append(path)
            raise OSError(28, "No space left on device")
        real_write(path, record)

    monkeypatch.setattr(lock, "_write", flaky)
    first = json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"]
    time.sleep(0.5)
    assert len(failures) == 2 and lock._thread.is_alive()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"] > first
    lock.release()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_holder_whose_lock_was_taken_over_leaves_the_new_lock(tmp_path: Path, caplog) -> None:
    lock = RunLock(tmp_path, heartbeat_s=0.05, stale_after_s=1.0).acquire()
    write_record(tmp_path, token="newcomer", host="other-node")
    with caplog.at_level(logging.ERROR):
        time.sleep(0.3)
        lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == "newcomer"
    assert "took this run's lock over" in caplog.text and lock.lost


def test_bad_timing_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stale_after_s"):
        RunLock(tmp_path, heartbeat_s=10, stale_after_s=20)


def test_train_stops_in_a_folder_another_live_process_holds(tmp_path: Path) -> None:
    """Nothing of a run is written (run_info.json, checkpoints) while another holds the folder,
    and a finished run leaves no lock behind."""
    from mitoseg.training.train import train
    from tests.conftest import TINY, compose_config

    busy, done = tmp_path / "busy", tmp_path / "done"
    with RunLock(busy, heartbeat_s=0.05, stale_after_s=5.0):
        with pytest.raises(RunFolderBusy, match="in use by"):
            train(compose_config("train", TINY, busy))
        assert not (busy / "run_info.json").exists() and not (busy / "checkpoints").exists()
    train(compose_config("train", TINY, done))
    assert (done / "metrics.json").is_file() and not (done / LOCK_NAME).exists()


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_a_refused_command_writes_nothing_of_a_failure_into_the_live_run(tmp_path, multirun):
    """No failed.json and no 'mitoseg: error:' line (report.py would read the live run as
    failed); a single run exits with status 2 and one line."""
    import os

    from tests.conftest import REPO, TINY, python_command

    if multirun:
        folder = tmp_path / "sweep" / "0"
        where = ["-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=0", "seed=0"]
    else:
        folder = tmp_path / "run"
        where = [f"hydra.run.dir={folder}"]
    with RunLock(folder, heartbeat_s=0.05, stale_after_s=5.0):
        done = subprocess.run(python_command("train.py", *TINY, *where), cwd=REPO, text=True,
                              capture_output=True, timeout=600,
                              env=os.environ | {"WANDB_MODE": "offline"})
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert done.returncode == (0 if multirun else 2), done.stderr[-2000:]
    assert "mitoseg: not run: run folder" in done.stderr
    assert not list(folder.glob("failed*.json")) and not (folder / "run_info.json").exists()
    assert all("mitoseg: error:" not in log.read_text() for log in folder.glob("*.log"))


def test_a_run_whose_lock_is_lost_stops_and_writes_no_result(tmp_path, monkeypatch) -> None:
    """Training checks the lock after every batch: a run taken over stops with RunLockLost
    before its checkpoints, test and metrics.json."""
    from mitoseg.training import train as train_module
    from tests.conftest import TINY, compose_config

    class TakenOver(RunLock):
        def acquire(self):
            super().acquire()
            self.lost = True  # as the heartbeat sets it when another process took over
            return self

    monkeypatch.setattr(train_module, "RunLock", TakenOver)
    with pytest.raises(RunLockLost):
        train_module.train(compose_config("train", TINY, tmp_path))
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
