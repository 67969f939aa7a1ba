"""The library stands on its own: configs inside the package, commands as console scripts."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path


from mitoseg.config.paths import config_dir, config_file
from tests.conftest import CONF, REPO
from tests.packaging.source import copy_source

SRC = REPO / "src" / "mitoseg"
COMMANDS = ("mitoseg-train", "mitoseg-evaluate", "mitoseg-segment", "mitoseg-study",
            "mitoseg-report")


def test_config_dir_is_the_repository_conf_folder() -> None:
    folder = config_dir()
    assert folder.parent == Path(importlib.import_module("mitoseg").__file__).parent
    assert folder.resolve() == CONF.resolve()
    assert config_file("model", "unet_paper000").samefile(CONF / "model" / "unet_paper000.yaml")


def test_library_modules_take_their_configs_from_config_dir() -> None:
    from mitoseg.models.table import CONF_MODEL
    from mitoseg.study.plan import condition_params
    from mitoseg.study.run import classical_methods

    assert CONF_MODEL == config_dir() / "model"
    assert condition_params("snr1")["snr"] == 1.0
    assert set(classical_methods(["otsu", "local_threshold"])) == {"otsu", "local"}


def test_no_module_reaches_into_the_repository() -> None:
    offenders = [f"{path.relative_to(REPO)}:{number}"
                 for path in sorted(SRC.rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"parents\[\d\]|\btrain\.py\b.*subprocess|REPO\b", line)]
    assert offenders == []


def test_console_scripts_name_the_command_functions() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(COMMANDS) <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_repository_scripts_call_the_package_commands() -> None:
    for name in ("train", "evaluate", "segment", "study", "report"):
        text = (REPO / f"{name}.py").read_text()
        assert f"from mitoseg.commands.{name} import run" in text, name
        assert "hydra.main" not in text, name


def test_wheel_ships_every_config(tmp_path: Path) -> None:
    source = copy_source(tmp_path / "source")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = tmp_path.glob("mitoseg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"mitoseg/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")}
    assert configs and configs <= names
    assert "mitoseg/commands/train.py" in names and "mitoseg/config/paths.py" in names


def test_library_code_logs_and_never_prints() -> None:
    offenders = [f"{path.relative_to(REPO)}:{number}"
                 for path in sorted(SRC.rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"(?<![\w.])print\(", line)]
    assert offenders == []
