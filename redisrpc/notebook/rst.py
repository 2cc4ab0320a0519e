"""Readable docstrings: the reST markup of remote docs shown as plain text or HTML.

Remote docstrings are often written for Sphinx. Shown raw, ``:meth:`add```
and double backquotes get in the way; this module turns the common inline
markup into what it stands for, for the card, the text repr, the CLI and the
explorer:

- a role (``:meth:`add```, ``:py:func:`f```, ``:class:`~lab.Calc```) shows its
  target, with ``()`` for functions and methods and only the last part after
  ``~``; an explicit title (``:meth:`the adder <add>```) shows the title;
- inline literals (double backquotes) and default-role text (single
  backquotes) show their content.

Everything else is left as written. The docstring arrives from the network:
:func:`to_html` escapes every piece, so markup in it shows as text.
"""

from __future__ import annotations

import html
import re

__all__ = ["segments", "to_html", "to_text"]

_INLINE = re.compile(
    r"(?::(?:[A-Za-z][\w+-]*:)?(?P<role>[A-Za-z][\w+-]*):`(?P<target>[^`]+)`)"
    r"|``(?P<literal>[^`]+?)``"
    r"|(?<![\w`])`(?P<default>[^`]+)`(?![\w`])"
)
_CALLABLE_ROLES = {"meth", "func"}
_TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$", re.S)


def _role(role: str, target: str) -> str:
    titled = _TITLED.match(target)
    if titled:
        return titled["title"]
    shown = target.lstrip("!")
    if shown.startswith("~"):
        shown = shown[1:].rsplit(".", 1)[-1]
    if role in _CALLABLE_ROLES and not shown.endswith(")"):
        shown += "()"
    return shown


def segments(doc: str) -> list[tuple[str, bool]]:
    """Split ``doc`` into ``(text, is_code)`` pieces with the inline markup resolved."""
    found: list[tuple[str, bool]] = []
    end = 0
    for match in _INLINE.finditer(doc):
        if match.start() > end:
            found.append((doc[end : match.start()], False))
        if match["role"] is not None:
            found.append((_role(match["role"], match["target"]), True))
        else:
            found.append((match["literal"] or match["default"], True))
        end = match.end()
    if end < len(doc):
        found.append((doc[end:], False))
    return found


def to_text(doc: str) -> str:
    """``doc`` with its inline reST markup resolved, as plain text."""
    return "".join(text for text, _ in segments(doc))


def to_html(doc: str) -> str:
    """``doc`` as escaped HTML, code pieces in ``<code>`` (no other markup is produced)."""
    return "".join(
        f"<code>{html.escape(text)}</code>" if code else html.escape(text)
        for text, code in segments(doc)
    )
