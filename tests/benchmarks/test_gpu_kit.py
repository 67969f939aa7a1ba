"""The GPU kit's scripts (benchmarks/gpu/) parse, and the files they name exist: a GPU session
has about 15 minutes of device time, so a typo must not cost one of its calls."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO

KIT = REPO / "benchmarks" / "gpu"


@pytest.mark.parametrize("script", sorted(p.name for p in KIT.glob("*.sh")))
def test_the_script_parses(script: str) -> None:
    done = subprocess.run(["bash", "-n", str(KIT / script)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script", ["call1.sh", "call2.sh"])
def test_the_repository_files_a_call_names_exist(script: str) -> None:
    text = (KIT / script).read_text()
    named = set(re.findall(r"\b((?:tests|benchmarks)/[\w/]+\.py)\b", text))
    assert named, script
    missing = sorted(path for path in named if not (REPO / path).is_file())
    assert not missing, f"{script} names files that do not exist: {missing}"
