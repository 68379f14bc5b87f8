"""Errors about input data, and how the option that fixes one is phrased for whoever asked.

A :class:`TableError` is one line naming the source, column and row, and the option that fixes it: ``time_column=``
in the library, ``--time-column`` on the command line (:func:`option_style` chooses). :func:`rows_text` names rows
in any such message.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def library_option(name: str, value: Any = None) -> str:
    """How the library names an option: ``time_column=`` or ``nan='drop'``."""
    if name == "rename" and isinstance(value, str) and "=" in value:
        old, new = value.split("=", 1)
        return f"rename={{{old!r}: {new!r}}}"
    return f"{name}=" if value is None else f"{name}={value!r}"


def command_line_option(name: str, value: Any = None) -> str:
    """How the command line names an option: ``--time-column`` or ``--nan drop``."""
    flag = "--" + name.replace("_", "-")
    if value is None or value is True:
        return flag
    if value is False:
        return "--no-" + name.replace("_", "-")
    return f"{flag} {value}"


_STYLE: contextvars.ContextVar[Callable[[str, Any], str | None]] = contextvars.ContextVar(
    "kronos_option_style", default=library_option)


@contextlib.contextmanager
def option_style(render: Callable[[str, Any], str | None]) -> Iterator[None]:
    """Within the block, :class:`TableError` messages (and log lines) name options with ``render``.

    ``render(name, value)`` returns the text for the option (``None`` leaves the fix out: for callers
    that do not offer that option). The command line uses :func:`command_line_option`.
    """
    token = _STYLE.set(render)
    try:
        yield
    finally:
        _STYLE.reset(token)


class TableError(ValueError):
    """Input that cannot be read as bars: one line naming where, what, and the option that fixes it.

    ``fix`` is a template whose ``{0}``, ``{1}`` ... are the ``options`` (name, value) pairs; they are
    phrased when the message is made (:func:`option_style`), or by :meth:`phrased` with any renderer.
    """

    def __init__(self, where: str | None, problem: str, fix: str | None = None,
                 options: Sequence[tuple[str, Any]] = ()):
        self.where, self.problem, self.fix, self.options = where, problem, fix, tuple(options)
        super().__init__(problem)

    def phrased(self, render: Callable[[str, Any], str | None] | None = None) -> str:
        render = render or _STYLE.get()
        text = f"{self.where}: {self.problem}" if self.where else self.problem
        if self.fix:
            names = [render(name, value) for name, value in self.options]
            if all(n is not None for n in names):
                text += "; " + self.fix.format(*names)
        return text

    def __str__(self) -> str:
        return self.phrased()


def rows_text(rows: Sequence[Any], limit: int = 5) -> str:
    """Row labels for a message: the first ``limit``, then how many more (``3, 8, 9 and 4 more``)."""
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")



def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), to quote in a message."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
