"""The table writer: CSV, Markdown and LaTeX text, each with one escaping rule.

Every table of the workflow (Table 1, the crossings, Table 2, the exact gap statistics)
is written through these functions, so a label reads the same in every format:

- CSV: :mod:`csv` quoting (a cell with the delimiter, a quote or a newline is quoted);
- Markdown: ``|`` inside a cell becomes ``\\|``;
- LaTeX: the ten special characters ``\\ { } $ & # ^ _ % ~`` are escaped in one pass
  (:func:`tex_escape`), so text cells never break the ``tabular``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from typing import Any, Callable, Mapping, Sequence

from robcurves.atomic import write_text

_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
}
_TEX_RE = re.compile("|".join(re.escape(c) for c in _TEX_SPECIALS))
FORMATS = ("csv", "md", "tex")


def tex_escape(text: Any) -> str:
    """``text`` as LaTeX text: every special character escaped (one pass, so nothing twice)."""
    return _TEX_RE.sub(lambda m: _TEX_SPECIALS[m.group(0)], str(text))


def md_escape(text: Any) -> str:
    """``text`` as a Markdown table cell: a ``|`` would end the cell."""
    return str(text).replace("|", r"\|")


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]], delimiter: str = ",") -> str:
    """A CSV table (``\\n`` line ends); cells are written with ``str``."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | Sequence[str] = "l") -> list[str]:
    """The lines of a Markdown table; ``align``: ``"l"`` or ``"r"`` for all columns or one per column."""
    aligns = [align] * len(header) if isinstance(align, str) else list(align)
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"
    line = lambda cells: "| " + " | ".join(md_escape(c) for c in cells) + " |"  # noqa: E731
    return [line(header), rule] + [line(r) for r in rows]


def tex_row(cells: Sequence[str]) -> str:
    """One ``tabular`` row of cells that are already LaTeX (escape text cells with :func:`tex_escape`)."""
    return " & ".join(cells) + r" \\"


def write_tables(texts: Mapping[str | os.PathLike, str]) -> list[str]:
    """Write each ``{path: text}`` atomically; return the paths."""
    for path, text in texts.items():
        write_text(path, text)
    return [str(p) for p in texts]


def _general(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_table(rows: list[dict], stem: str | os.PathLike, caption: str = "",
                cell: Callable[[Any], str] = _general) -> list[str]:
    """Write ``rows`` (dicts with the same keys) as ``stem.csv``, ``.md`` and ``.tex``; return the paths.

    Cells are formatted by ``cell`` (floats to 4 significant digits by default); the
    Markdown file starts with ``caption``; the LaTeX file is a plain ``tabular``.
    """
    stem = str(stem)
    cols = list(rows[0]) if rows else ["(empty)"]
    cells = [[cell(r[c]) for c in cols] for r in rows]
    md = (f"{caption}\n\n" if caption else "") + "\n".join(markdown_table(cols, cells)) + "\n"
    tex = "\n".join([r"\begin{tabular}{" + "l" * len(cols) + "}", r"\hline", tex_row([tex_escape(c) for c in cols]),
                     r"\hline", *[tex_row([tex_escape(v) for v in r]) for r in cells], r"\hline", r"\end{tabular}"])
    return write_tables({f"{stem}.csv": csv_text(cols, cells), f"{stem}.md": md, f"{stem}.tex": tex + "\n"})
