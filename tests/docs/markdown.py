"""Read the project's markdown: the commands it shows and the links it makes.

A command is a line of a fenced code block (with its `\\` continuation lines) or an inline
code span that starts with `python`, `make` or `bash`. A fenced block whose opening fence
follows a `<!-- not-run -->` line (blank lines between are allowed) holds illustrations: its
commands are collected with `not_run=True`; so are the inline commands of a paragraph that
holds the marker. Placeholders such as `<run>` or `<date_time>`
stand for a value the reader fills in: the checks replace them with a dummy value, or drop
them where they stand for a whole argument (`<same overrides>`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

NOT_RUN = "<!-- not-run -->"
PROGRAMS = ("python", "python3", "make", "bash")
PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>")
DUMMY = "PLACEHOLDER"
FENCE = re.compile(r"^(\s*)(```+|~~~+)")
INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_files() -> list[Path]:
    """README.md, every page under docs/ and the benchmarks' README."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")),
            REPO / "benchmarks" / "README.md"]


@dataclass(frozen=True)
class Command:
    file: Path
    line: int           # 1-based line of the command's first line
    text: str           # as written (continuations joined, comment removed)
    not_run: bool

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line}"

    def argv(self, drop_whole_placeholders: bool = False) -> list[str] | None:
        """The command's words with placeholders filled in; None if the program itself is a
        placeholder (`python benchmarks/<name>.py`). A placeholder that is a whole argument
        is dropped if asked (in a Hydra command, `<same overrides>` stands for overrides)."""
        words = shlex.split(PLACEHOLDER.sub(DUMMY, self.text), comments=True)
        if len(words) > 1 and DUMMY in words[1]:
            return None
        text = self.text
        if drop_whole_placeholders:  # also a bare `...` ("and so on")
            text = re.sub(r"(?:(?<=\s)|^)(?:" + PLACEHOLDER.pattern + r"|\.\.\.)(?=\s|$)", "",
                          text)
        return shlex.split(PLACEHOLDER.sub(DUMMY, text), comments=True)


def _is_command(text: str) -> bool:
    words = text.split()
    return bool(words) and words[0] in PROGRAMS and len(words) > 1


def _fenced_commands(path: Path, lines: list[str]) -> tuple[list[Command], set[int]]:
    commands, fenced_lines = [], set()
    inside, fence, not_run, pending = False, "", False, None
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if not inside and match:
            inside, fence = True, match.group(2)
            previous = [l.strip() for l in lines[:number - 1] if l.strip()]
            not_run = bool(previous) and previous[-1] == NOT_RUN
            fenced_lines.add(number)
            continue
        if inside and line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
            inside = False
            fenced_lines.add(number)
            continue
        if not inside:
            continue
        fenced_lines.add(number)
        if pending is not None:  # a continuation of the previous line
            start, text = pending
            text = f"{text} {line.strip()}"
        else:
            start, text = number, line.strip()
        if text.endswith("\\"):
            pending = (start, text[:-1].rstrip())
            continue
        pending = None
        if _is_command(text):
            commands.append(Command(path, start, text, not_run))
    return commands, fenced_lines


def _inline_commands(path: Path, lines: list[str], fenced: set[int]) -> list[Command]:
    """Inline code spans that are commands; a span may wrap over lines of a paragraph."""
    commands = []
    paragraphs: list[list[tuple[int, str]]] = [[]]
    for number, line in enumerate(lines, start=1):
        if number in fenced or not line.strip():
            paragraphs.append([])
        else:
            paragraphs[-1].append((number, line))
    for paragraph in paragraphs:
        text, starts = "", []
        for number, line in paragraph:
            starts.append((len(text), number))
            text += line + "\n"
        for match in INLINE_CODE.finditer(text):
            span = " ".join(match.group(1).split())
            if _is_command(span):
                line = max(n for offset, n in starts if offset <= match.start())
                commands.append(Command(path, line, span, not_run=NOT_RUN in text))
    return commands


def commands(path: Path) -> list[Command]:
    lines = path.read_text().splitlines()
    fenced, fenced_lines = _fenced_commands(path, lines)
    return fenced + _inline_commands(path, lines, fenced_lines)


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every markdown link outside code; external addresses left out."""
    found = []
    lines = path.read_text().splitlines()
    _, fenced = _fenced_commands(path, lines)
    for number, line in enumerate(lines, start=1):
        if number in fenced:
            continue
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                found.append((number, target))
    return found


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    anchors: set[str] = set()
    lines = path.read_text().splitlines()
    _, fenced = _fenced_commands(path, lines)
    for number, line in enumerate(lines, start=1):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if number in fenced or match is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        anchor, n = slug, 1
        while anchor in anchors:
            anchor, n = f"{slug}-{n}", n + 1
        anchors.add(anchor)
    return anchors
