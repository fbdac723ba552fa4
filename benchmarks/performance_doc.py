"""The benchmarks' output: markdown tables and the blocks each script writes into docs/performance.md
(never into the top-level README)."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common

PERFORMANCE_DOC = common.REPO / "docs" / "performance.md"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def report(
    name: str, title: str, body: str, threads: int, write: bool, doc: Path = PERFORMANCE_DOC, timed: bool = True
) -> None:
    """Print the block and, unless told not to, put it between the markers for ``name`` in ``doc``
    (with a warning when ``timed`` figures were taken on a busy CPU)."""
    block = "\n".join(
        [
            f"### {title}",
            "",
            (
                f"Measured {datetime.date.today().isoformat()} on {common.machine_line(threads)}; other work used "
                f"{fmt(common.START_BUSY, 0)} % of the CPU in the second before the run."
            ),
            f"Command: `{common.command_line()}`",
            "",
            body.strip(),
        ]
    )
    if timed and common.START_BUSY > common.BUSY_PERCENT:
        block += "\n\n**Other work was using the CPU when this ran: the timings are skewed; rerun on a quiet machine.**"
    print()
    print(block)
    if write:
        write_block(doc, name, block)
        print(f"\n(written to {doc} between <!-- benchmark:{name} --> markers)")


def write_block(doc: Path, name: str, block: str) -> None:
    """Replace the text between ``<!-- benchmark:name -->`` and ``<!-- /benchmark:name -->``; create the
    markers (at the end of the ``## Benchmarks`` section, which is added when missing) when absent."""
    start, end = f"<!-- benchmark:{name} -->", f"<!-- /benchmark:{name} -->"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    content = f"{start}\n{block.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + content + after
    else:
        section = re.search(r"^## Benchmarks[ \t]*$", text, flags=re.MULTILINE)
        if section is None:
            text = text.rstrip("\n") + "\n\n## Benchmarks\n\nMeasured by the scripts in `benchmarks/` "
            text += "(see [benchmarks/README.md](../benchmarks/README.md)); each block is rewritten by its script.\n"
            section = re.search(r"^## Benchmarks[ \t]*$", text, flags=re.MULTILINE)
        following = text.find("\n## ", section.end())  # the section ends at the next level-2 heading
        insert_at = len(text.rstrip("\n")) if following < 0 else following
        text = text[:insert_at].rstrip("\n") + "\n\n" + content + "\n" + text[insert_at:]
        if following < 0:
            text = text.rstrip("\n") + "\n"
    from ddpmseg.base.files import save_text

    save_text(doc, text)
