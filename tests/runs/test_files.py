"""Result files: written whole, never over an earlier result, next free names for records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mitoseg.errors import InputError
from mitoseg.runs.failures import failure_record_path
from mitoseg.runs.files import next_free_path, write_new_csv, write_new_json, write_new_text


def test_next_free_path_counts_up_and_keeps_the_suffix(tmp_path: Path) -> None:
    assert next_free_path(tmp_path / "failed.json") == tmp_path / "failed.json"
    (tmp_path / "failed.json").write_text("{}")
    assert next_free_path(tmp_path / "failed.json") == tmp_path / "failed-2.json"
    (tmp_path / "failed-2.json").write_text("{}")
    assert failure_record_path(tmp_path) == tmp_path / "failed-3.json"
    (tmp_path / "report").mkdir()
    assert next_free_path(tmp_path / "report") == tmp_path / "report-2"


def test_writers_refuse_to_replace_an_existing_file(tmp_path: Path) -> None:
    target = write_new_json(tmp_path / "metrics.json", {"as": 0.9})
    assert json.loads(target.read_text()) == {"as": 0.9}
    for write, data in ((write_new_json, {"as": 0.1}), (write_new_text, "x"),
                        (write_new_csv, [{"a": 1}])):
        with pytest.raises(InputError, match="refusing to overwrite .*metrics.json"):
            write(tmp_path / "metrics.json", data)
    assert json.loads(target.read_text()) == {"as": 0.9}  # untouched
