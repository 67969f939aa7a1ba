"""Imports flow one way: training and study read results through reporting, reporting reads
runs/, and runs/ (the identity's owner) imports neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "mitoseg"
ALLOWED = {"runs": {"runs", "errors"},
           "reporting": {"reporting", "runs", "errors"}}
FORBIDDEN = {"training": {"reporting", "study"}}


def mitoseg_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found |= {n.split(".")[1] for n in names if n.startswith("mitoseg.")}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_layers_import_no_higher_one(package: str) -> None:
    for path in sorted((PACKAGE / package).glob("*.py")):
        assert mitoseg_imports(path) <= ALLOWED[package], path.name


def test_training_reaches_no_report_reader() -> None:
    for path in sorted((PACKAGE / "training").glob("*.py")):
        assert not mitoseg_imports(path) & FORBIDDEN["training"], path.name
