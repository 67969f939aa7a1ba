"""The reference pages keep up with conf/: every option of every config group is named in
docs/reference/config-groups.md, and every network in the model zoo's table."""

from __future__ import annotations

import re

from tests.conftest import CONF, REPO

GROUPS_PAGE = REPO / "docs" / "reference" / "config-groups.md"
MODELS_PAGE = REPO / "docs" / "reference" / "models.md"


def options(group: str) -> set[str]:
    return {p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_")}


def config_groups() -> list[str]:
    """Every folder of options under conf/, less `hydra` itself: Hydra's own settings (e.g. an
    output layout every entry point selects), not a choice a user makes."""
    return sorted(str(d.relative_to(CONF)) for d in CONF.rglob("*")
                  if d.is_dir() and any(d.glob("*.yaml")) and d != CONF / "hydra")


def table_rows(page) -> dict[str, str]:
    """First cell (without backticks) -> the whole row, for every markdown table row."""
    rows = {}
    for line in page.read_text().splitlines():
        if line.startswith("| "):
            first = line.split("|")[1].strip().strip("`")
            rows[first] = line
    return rows


def test_config_groups_page_names_every_option() -> None:
    rows = table_rows(GROUPS_PAGE)
    problems = []
    for group in config_groups():
        if group not in rows:
            problems.append(f"group {group}: no row")
            continue
        named = set(re.findall(r"`([^`]+)`", rows[group].split("|")[2]))
        if named != options(group):
            problems.append(f"group {group}: conf has {sorted(options(group) - named)} "
                            f"not in the table; the table has {sorted(named - options(group))} "
                            f"not in conf")
    assert problems == [], f"update {GROUPS_PAGE.relative_to(REPO)}: {problems}"


def test_model_zoo_table_has_every_network() -> None:
    assert options("model") <= set(table_rows(MODELS_PAGE))
