"""Read a W&B offline run's transaction log (``wandb/offline-run-*/run-<id>.wandb``): its id,
group, config, final summary and exit code, without network and without wandb's reader.

The log (wandb 0.31) is a 7-byte header ``<4sHB`` (b":W&B", 0xBEE1, version 0), then
LevelDB-style 32768-byte blocks of chunks: a 7-byte header ``<IHB`` (crc32 of the type byte
and the data, data length, type) and the data; FULL chunks hold one record, FIRST + MIDDLE... +
LAST chunks one record split across blocks. Fewer than 7 bytes left in a block are padding; a
zero header ends the data. Each record is a ``wandb_internal_pb2.Record`` protobuf.

A run killed mid-write leaves a truncated or half-written file: what was read before the
damage is returned, with the damage described in ``problems``, never raised. A resumed run
writes a new offline-run folder under the same run id (``merge_attempts``).
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_HEADER = struct.Struct("<4sHB")  # magic, ident, format version
CHUNK_HEADER = struct.Struct("<IHB")  # crc32(type byte + data), data length, type
MAGIC, IDENT, VERSION = b":W&B", 0xBEE1, 0
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass(frozen=True)
class OfflineRun:
    """What one ``run-<id>.wandb`` says. ``summary`` holds the latest value of each key
    (nested keys joined by '/'); ``exit_code`` is None when the log has no exit record (the
    run is still running, or was killed)."""

    run_id: str
    group: str
    config: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    problems: tuple[str, ...] = ()  # damage found in the file; what came before it is read


def read_offline_run(path: str | Path) -> OfflineRun:
    """Replay the run, config, summary and exit records of one ``run-<id>.wandb``."""
    path = Path(path)
    records, problems = read_records(path)
    run_id, group, exit_code = "", "", None
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for _, record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id = record.run.run_id or run_id
            group = record.run.run_group or group
            _apply(config, record.run.config.update, (), problems)
        elif kind == "config":
            _apply(config, record.config.update, record.config.remove, problems)
        elif kind == "summary":
            _apply(summary, record.summary.update, record.summary.remove, problems)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    return OfflineRun(run_id=run_id or path.stem.removeprefix("run-"), group=group,
                      config=config, summary=summary, exit_code=exit_code,
                      problems=tuple(f"{path.name}: {p}" for p in problems))


def merge_attempts(attempts: Sequence[OfflineRun]) -> OfflineRun:
    """The attempts of one resumed run, oldest first -> one run. Each attempt's log starts
    empty, so the config is merged (later values win); the summary, exit code and problems
    are the latest attempt's: it decides how the run ended."""
    config: dict[str, Any] = {}
    for attempt in attempts:
        config.update(attempt.config)
    return dataclasses.replace(attempts[-1], config=config)


def read_records(path: str | Path) -> tuple[list[tuple[int, Any]], list[str]]:
    """Every intact record of the log as (byte offset of its first chunk, ``Record``), and
    the problems found (reading stops at the first damaged chunk)."""
    # Imported here: wandb is slow to import and only needed when offline runs are found.
    from google.protobuf.message import DecodeError
    from wandb.proto.wandb_internal_pb2 import Record

    problems: list[str] = []
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return [], [f"unreadable ({error})"]
    if len(data) < FILE_HEADER.size or FILE_HEADER.unpack_from(data)[:2] != (MAGIC, IDENT):
        return [], [f"not a W&B transaction log (starts with {data[:FILE_HEADER.size]!r})"]
    version = FILE_HEADER.unpack_from(data)[2]
    if version != VERSION:
        problems.append(f"format version {version}, expected {VERSION}; read as {VERSION}")
    records = []
    for offset, payload in _payloads(data, problems):
        record = Record()
        try:
            record.ParseFromString(payload)
        except DecodeError as error:  # the checksum held, so the framing goes on
            problems.append(f"record at byte {offset} is not a W&B record ({error})")
            continue
        records.append((offset, record))
    return records, problems


def _payloads(data: bytes, problems: list[str]) -> Iterable[tuple[int, bytes]]:
    """Reassemble the chunks into records: (offset of the first chunk, record bytes)."""
    position, parts, start = FILE_HEADER.size, None, 0
    while position < len(data):
        left = BLOCK - position % BLOCK
        if left < CHUNK_HEADER.size:
            position += left  # block trailer: padding
            continue
        if position + CHUNK_HEADER.size > len(data):
            problems.append(f"truncated at byte {position} (inside a chunk header)")
            return
        checksum, length, kind = CHUNK_HEADER.unpack_from(data, position)
        if length == 0 and kind == 0:
            break  # zero header: the end of the written data
        end = position + CHUNK_HEADER.size + length
        if length > left - CHUNK_HEADER.size:
            problems.append(f"corrupt chunk header at byte {position} (length {length} "
                            "crosses a block)")
            return
        if end > len(data):
            problems.append(f"truncated at byte {len(data)} (a chunk of {length} bytes "
                            f"starts at byte {position})")
            return
        payload = data[position + CHUNK_HEADER.size:end]
        if zlib.crc32(bytes([kind]) + payload) != checksum:
            problems.append(f"checksum mismatch in the chunk at byte {position}")
            return
        if kind == FULL and parts is None:
            yield position, payload
        elif kind == FIRST and parts is None:
            parts, start = [payload], position
        elif kind in (MIDDLE, LAST) and parts is not None:
            parts.append(payload)
            if kind == LAST:
                yield start, b"".join(parts)
                parts = None
        else:
            problems.append(f"unexpected chunk type {kind} at byte {position}")
            return
        position = end
    if parts is not None:
        problems.append(f"truncated: the record starting at byte {start} has no last chunk")


def _apply(values: dict[str, Any], updates: Iterable[Any], removals: Iterable[Any],
           problems: list[str]) -> None:
    """Config or summary items (key or nested_key, value_json): later updates win."""
    for item in updates:
        key = _key(item)
        try:
            values[key] = json.loads(item.value_json)
        except ValueError:
            problems.append(f"value of '{key}' is not JSON; kept as text")
            values[key] = item.value_json
    for item in removals:
        values.pop(_key(item), None)


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key
