"""User-facing errors: every mistake in user input becomes one of these.

The CLI turns them into one line on stderr and exit status 2; the Python API
lets them propagate (they are ``ValueError`` subclasses).
"""

from __future__ import annotations

import unicodedata


class CnnCalcError(ValueError):
    """Bad user input, with enough context to point at the problem."""


class SpecError(CnnCalcError):
    """A syntax or meaning error in layer-language text, at a known position."""

    def __init__(self, message: str, source: str, pos: int, length: int = 1):
        self.message = message
        self.source = source
        self.pos = max(0, min(pos, len(source)))
        self.length = max(1, length)
        line_start = source.rfind("\n", 0, self.pos) + 1
        self.line = source.count("\n", 0, self.pos) + 1
        self.column = self.pos - line_start + 1
        where = f"line {self.line}, column {self.column}" if "\n" in source else (
            f"column {self.column}"
        )
        super().__init__(f"{where}: {message}")

    def excerpt(self, width: int = 76) -> tuple[str, str]:
        """The offending source line (windowed to ``width``) and a caret line under it.

        Tabs and other invisible characters are shown as one cell each (a space, or
        ``?``) and wide characters as two, so the caret stands under the bad spot.
        """
        line_start = self.source.rfind("\n", 0, self.pos) + 1
        line_end = self.source.find("\n", self.pos)
        line = self.source[line_start : line_end if line_end >= 0 else len(self.source)]
        col = self.pos - line_start
        start = max(0, min(col - width // 2, len(line) - width))
        shown = "".join(_cell(ch) for ch in line[start : start + width])
        prefix = "…" if start > 0 else ""
        suffix = "…" if start + width < len(line) else ""
        before = shown[: col - start]
        under = shown[col - start : col - start + max(1, self.length)]
        caret_len = max(1, sum(_width(ch) for ch in under))
        caret = " " * (len(prefix) + sum(_width(ch) for ch in before)) + "^" * caret_len
        return prefix + shown + suffix, caret


def _cell(ch: str) -> str:
    if ch.isprintable():
        return ch
    return " " if ch in "\t\r\f\v" else "?"


def _width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class ShapeError(CnnCalcError):
    """A layer that cannot be applied to the shape reaching it."""

    def __init__(self, message: str, index: int | None = None, name: str | None = None,
                 span: tuple[int, int] | None = None):
        self.message = message
        self.index = index
        self.name = name
        self.span = span  # where the layer was written, when the text is known
        where = f"layer {index} ({name}): " if index is not None else ""
        super().__init__(where + message)
