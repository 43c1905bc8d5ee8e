"""The code blocks of docs/*.md and what each is marked for.

The mark is an HTML comment on the line before the block's opening fence (invisible on the
site):

- ``<!-- docs: run -->``: run it. A python block runs as a script (``python block.py``) in the
  page's folder; a sh or console block runs each command (console: the lines after ``$ ``)
  with bash, and each must exit 0.
- ``<!-- docs: run in background -->``: a sh block of one long-running command (``conveyor
  dev``), started and left running until the page's last block has run.
- ``<!-- docs: file NAME -->``: write the block to NAME in the page's folder (a task module,
  a test file the page later runs).
- ``<!-- docs: not run: REASON -->``: an illustration, not run (a fragment of a bigger
  application, an installation step, a command needing a server the page does not start).

Every python block must carry one of these, as must every sh or console block that runs a
``conveyor`` command: tests/docs/test_examples.py fails on one that does not, so none slips
through unmarked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)")
_MARK = re.compile(r"^\s*<!--\s*docs:\s*(?P<mark>.*?)\s*-->\s*$")
SHELLS = {"sh", "console", "bash", "shell"}
_CONVEYOR_COMMAND = re.compile(r"^\s*(\$\s+)?conveyor\s", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    mark: str | None  # "run", "run in background", "file NAME", "not run: ..." or None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(DOCS.parent)}:{self.line}"

    @property
    def needs_mark(self) -> bool:
        return self.lang == "python" or (self.lang in SHELLS and bool(_CONVEYOR_COMMAND.search(self.code)))

    @property
    def runs(self) -> bool:
        return self.mark is not None and (self.mark.startswith("run") or self.mark.startswith("file "))


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, in order, with their marks."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent = opening["indent"]
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].strip().startswith("```"):
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index])
            index += 1
        index += 1  # the closing fence
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marked = _MARK.match(previous)
        found.append(
            Block(page, start + 1, opening["lang"], "\n".join(body) + "\n", marked and marked["mark"])
        )
    return found


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def commands(block: Block) -> list[str]:
    """The commands of a sh or console block: console lines after ``$ ``, sh lines that are not
    comments, with backslash continuations joined."""
    joined: list[str] = []
    pending = ""
    for raw in block.code.splitlines():
        line = raw.rstrip()
        if block.lang == "console":
            if pending:
                line = line.strip()
            elif line.startswith("$ "):
                line = line[2:]
            else:
                continue  # output
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return joined
