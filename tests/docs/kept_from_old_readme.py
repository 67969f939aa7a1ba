"""A one-off check for the README split (issue 15): nothing measured or commanded got lost.

    python tests/docs/kept_from_old_readme.py [commit]     # default: e0bbd3b, before the split

Every number (figures, counts, commits) and every inline code span or code-block line (less its comment) of the
README at <commit> must still appear somewhere in README.md or docs/**/*.md. Prints what is
missing and exits 1 if anything is. Not a pytest test: it needs the git history, and later
edits may change figures on purpose.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:e-?\d+)?")
COMMIT = re.compile(r"\b[0-9a-f]{7}\b")
CODE_SPAN = re.compile(r"`([^`]+)`")
# Changed on purpose in the split, with the reason.
CHANGED = {
    "python -m mitoseg.data.download lucchi_pp data/":
        "wrong data set name: the downloader knows lucchi, lucchi++ and kasthuri++",
}


def tokens(text: str) -> dict[str, set[str]]:
    flat = re.sub(r"\s+", " ", re.sub(r"```.*?```", " ", text, flags=re.DOTALL))
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.DOTALL)
    lines = {re.sub(r"\s+", " ", line.split(" #")[0]).strip()  # the command, not its comment
             for block in blocks for line in block.splitlines()}
    return {
        "numbers": set(NUMBER.findall(text)),
        "commits": {c for c in COMMIT.findall(text) if re.search(r"\d", c) and re.search("[a-f]", c)},
        "code spans": {re.sub(r"\s+", " ", s) for s in CODE_SPAN.findall(flat)},
        "code-block lines": {line for line in lines if line},
    }


def new_text() -> str:
    paths = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return "\n".join(path.read_text() for path in paths)


def main(argv: list[str]) -> int:
    commit = argv[0] if argv else "e0bbd3b"
    old = subprocess.run(["git", "show", f"{commit}:README.md"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    new = new_text()
    flat_new = re.sub(r"\s+", " ", new)
    new_tokens = tokens(new)
    missing = 0
    for kind, items in tokens(old).items():
        lost = sorted(items - new_tokens[kind]) if kind == "numbers" else \
            sorted(i for i in items if i not in flat_new)
        for item in lost:
            if item in CHANGED:
                print(f"changed on purpose: {item} ({CHANGED[item]})")
                continue
            print(f"missing {kind[:-1]}: {item}")
            missing += 1
    print(f"{missing} missing" if missing else "every number, commit and command kept")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
