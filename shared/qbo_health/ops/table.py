"""Plain-text tables for a terminal: aligned columns, numbers right-aligned, no dependencies."""

from __future__ import annotations

from collections.abc import Sequence

Cell = str | int | float | None


def one_line(text: str) -> str:
    """Outside text for one line of a terminal: no line breaks, no control sequences."""
    return _text(text)


def _text(cell: Cell) -> str:
    if cell is None:
        return "-"
    # One line per row, whatever the value holds; no terminal control sequences from outside text.
    return " ".join("".join(c if c.isprintable() or c.isspace() else "?" for c in str(cell)).split())


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, max_width: int = 60) -> str:
    """Columns separated by two spaces; cells longer than ``max_width`` are cut with an ellipsis."""
    texts = [[_clip(_text(cell), max_width) for cell in row] for row in rows]
    numeric = [
        bool(rows) and all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]
    widths = [max([len(header), *(len(row[i]) for row in texts)]) for i, header in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * width for width in widths])]
    out += [line(row) for row in texts]
    return "\n".join(out) + "\n"


def format_fields(pairs: Sequence[tuple[str, Cell]]) -> str:
    """``name  value`` lines with the names aligned (one record, e.g. a connection's fields)."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "".join(f"{name.ljust(width)}  {_text(value)}\n" for name, value in pairs)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
