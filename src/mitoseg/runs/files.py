"""Result files that are written whole or not at all, and never over an earlier result."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mitoseg.errors import InputError


def next_free_path(path: str | Path) -> Path:
    """`path` if nothing is there, else the first free of name-2, name-3 ... (suffix kept).

    For records that must never replace an earlier one (a second failure, a second analysis).
    """
    path = Path(path)
    candidate, attempt = path, 1
    while candidate.exists():
        attempt += 1
        candidate = path.with_name(f"{path.stem}-{attempt}{path.suffix}")
    return candidate


def write_new_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; refuse if ``path`` exists.

    The bytes go to a temporary file in the same folder, which is then hard-linked to the
    final name: the link fails if the name exists, so a crash never leaves a half-written
    result and two runs never silently overwrite each other.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise InputError(f"refusing to overwrite existing result '{path}'")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(temporary, 0o644)  # mkstemp makes it private; results are meant to be shared
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        try:
            os.link(temporary, path)
        except FileExistsError as error:
            raise InputError(f"refusing to overwrite existing result '{path}'") from error
    finally:
        os.unlink(temporary)
    return path


def write_new_text(path: str | Path, text: str) -> Path:
    return write_new_bytes(path, text.encode("utf-8"))


def write_new_json(path: str | Path, data: Any) -> Path:
    return write_new_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n")


def write_new_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: to_jsonable(value) for key, value in row.items()} for row in rows)
    return write_new_text(path, buffer.getvalue())


def to_jsonable(value: Any) -> Any:
    """numpy scalars/arrays, paths and tuples -> plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
