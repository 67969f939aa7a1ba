"""Docs cannot rot: every command in README.md, docs/ and benchmarks/README.md is checked.

- `python train.py|evaluate.py|segment.py|study.py ...` composes with Hydra (the overrides as
  the entry point would pass them: `seed=0..9` expanded, `-m` taken out, and each sweep of a
  multirun replaced by its first value; each further choice of a `model=a,b` or `glob(...)`
  sweep is composed too), without running anything;
- `python report.py ...`, `python benchmarks/*.py ...` and `python -m mitoseg.... ...` parse
  their arguments with the script's own argparse parser (stopped right after parsing);
- `make <target>` names a target of the Makefile; `bash <file>` names a file of the repository.

Commands in a block marked `<!-- not-run -->` are skipped, and pytest counts them. Commands
that need another helper's config change before they compose are listed in XFAIL (issue 15
is being merged piecewise); they pass or fail without breaking the suite.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from unittest import mock

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, RangeSweep

from mitoseg.config import normalize_argv
from tests.conftest import CONF, REPO
from tests.docs.markdown import DUMMY, Command, commands, markdown_files

HYDRA_SCRIPTS = {"train.py": "train", "evaluate.py": "evaluate", "segment.py": "segment",
                 "study.py": "study"}
MULTIRUN_FLAGS = ("-m", "--multirun")

# "<file>:<command text>" -> why it does not compose yet (xfail, not strict).
XFAIL: dict[str, str] = {}

ALL = [command for path in markdown_files() for command in commands(path)]


def _id(command: Command) -> str:
    return f"{command.where} {command.text[:70]}"


# ---- Hydra entry points -------------------------------------------------------------------

def sweep_values(override) -> list[str]:
    """The values a sweep override (a,b / range / glob) expands to."""
    value = override.value()
    if isinstance(value, Glob):
        group = override.key_or_group
        options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        return value.filter(options)
    return list(override.sweep_string_iterator())


def single_runs(overrides: list[str]) -> list[list[str]]:
    """The overrides of the jobs to compose for a multirun: every sweep at its first value,
    then, for each choice of a config group or key (`model=a,b`, `ablation=glob(a*)`), one
    job per further value (numeric ranges such as seeds only at their first value)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    first, further = [], []
    for index, (text, override) in enumerate(zip(overrides, parsed)):
        if not override.is_sweep_override():
            first.append(text)
            continue
        values = sweep_values(override)
        assert values, f"{text}: the sweep has no value (a glob matching no option?)"
        key = override.get_key_element()
        first.append(f"{key}={values[0]}")
        if not isinstance(override.value(), RangeSweep):
            further += [(index, f"{key}={value}") for value in values[1:]]
    runs = [first]
    for index, replacement in further:
        run = list(first)
        run[index] = replacement
        runs.append(run)
    return runs


def hydra_jobs(argv: list[str]) -> tuple[str, list[list[str]]]:
    """(config name, overrides of each job to compose) of `python <entry point> ...`, as the
    entry point sees them: ranges expanded, `-m` taken out."""
    argv = normalize_argv(argv[1:])
    script, arguments = argv[0], argv[1:]
    multirun = any(a in MULTIRUN_FLAGS for a in arguments)
    overrides = [a for a in arguments if a not in MULTIRUN_FLAGS]
    bad = [a for a in overrides if a.startswith("-")]
    assert not bad, f"flags Hydra does not take here: {bad}"
    return HYDRA_SCRIPTS[Path(script).name], single_runs(overrides) if multirun else [overrides]


@functools.cache
def compose_once(name: str, overrides: tuple[str, ...]) -> None:
    """Compose one job (a command shown on several pages is composed once; a failure raises
    and is not cached)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        compose(name, overrides=list(overrides), return_hydra_config=True)


def compose_command(argv: list[str]) -> None:
    name, jobs = hydra_jobs(argv)
    for overrides in jobs:
        compose_once(name, tuple(overrides))


# ---- argparse scripts ---------------------------------------------------------------------

class Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__("parsed")
        self.namespace = namespace


def parsed_arguments(main, argv: list[str]) -> argparse.Namespace:
    """Run main(argv) up to the end of its argument parsing, and no further."""
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(parser, args=None, namespace=None):
        raise Parsed(original(parser, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_and_stop):
        try:
            main(argv)
        except Parsed as done:
            return done.namespace
        except SystemExit as exit_:
            raise AssertionError(f"argument parsing failed (exit {exit_.code})") from None
    raise AssertionError("main() returned without parsing its arguments")


def script_module(path: Path):
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # benchmarks import their _common helper
    try:
        spec = importlib.util.spec_from_file_location(f"_doc_check_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    finally:
        if added:
            sys.path.remove(folder)
    return module


def check_module_command(module_name: str, arguments: list[str]) -> None:
    if not module_name.startswith("mitoseg"):  # another tool (pytest, ...): it must exist
        assert importlib.util.find_spec(module_name) is not None, f"no module {module_name}"
        return
    module = importlib.import_module(module_name)
    assert hasattr(module, "main"), f"{module_name} has no main(argv)"
    args = parsed_arguments(module.main, arguments)
    if module_name == "mitoseg.data.download" and DUMMY not in args.dataset:
        assert args.dataset.lower() in module.DATASETS, \
            f"unknown data set {args.dataset!r}; known: {sorted(module.DATASETS)}"


def check_python(argv: list[str]) -> None:
    if argv[1] == "-m":
        check_module_command(argv[2], argv[3:])
        return
    path = REPO / argv[1]
    assert path.is_file(), f"no script {argv[1]}"
    module = script_module(path)
    assert hasattr(module, "main"), f"{argv[1]} has no main(argv)"
    parsed_arguments(module.main, argv[2:])


# ---- make and bash ------------------------------------------------------------------------

def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_-][A-Za-z0-9_.-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def check_make(argv: list[str]) -> None:
    targets = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
    missing = [t for t in targets if t not in make_targets()]
    assert not missing, f"no Makefile target {missing}; targets: {sorted(make_targets())}"


# ---- the test -----------------------------------------------------------------------------

def check(command: Command) -> None:
    program = command.argv()[0]
    if program in ("python", "python3"):
        script = command.argv()[1]
        if Path(script).name in HYDRA_SCRIPTS:
            compose_command(command.argv(drop_whole_placeholders=True))
        else:
            check_python(command.argv())
    elif program == "make":
        check_make(command.argv())
    elif program == "bash":
        assert (REPO / command.argv()[1]).is_file(), f"no file {command.argv()[1]}"


@pytest.mark.parametrize("command", ALL, ids=[_id(c) for c in ALL])
def test_documented_command_works(command: Command, request: pytest.FixtureRequest) -> None:
    if command.not_run:
        pytest.skip(f"marked <!-- not-run --> ({command.where})")
    argv = command.argv()
    if argv is None:
        pytest.skip(f"the program is a placeholder ({command.where}): {command.text}")
    if argv[0] == "bash" and not (REPO / Path(argv[1]).parts[0]).exists():
        pytest.skip(f"a script made at run time ({command.where}): {argv[1]}")
    reason = XFAIL.get(f"{command.file.relative_to(REPO)}:{command.text}")
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))
    check(command)


def test_commands_were_found() -> None:
    """The extraction itself works: the README's two commands, its everyday commands, and
the commands of every how-to guide."""
    readme = [c.argv() for c in ALL if c.file == REPO / "README.md"]
    assert readme[:2] == [["make", "demo"], ["make", "test"]]
    assert sum(argv[:2] == ["python", "train.py"] for argv in readme) >= 15
    for path in (REPO / "docs" / "how-to").glob("*.md"):  # every guide shows commands
        assert any(c.file == path for c in ALL), path.name
