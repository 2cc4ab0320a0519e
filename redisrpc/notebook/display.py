"""Rich display of remote objects: an HTML card for notebooks and a readable text form.

Both are built from a cached ``__describe__`` payload and never touch the
network. A description arrives from the network, so every piece of text is
escaped with :func:`html.escape` and every field is checked for its type
before use: a hostile or malformed description shows as text, never as markup.
"""

from __future__ import annotations

import html
from typing import Any

from ..client.signature import signature_from_params
from ..core.protocol import is_valid_name
from . import rst

__all__ = ["describe_html", "describe_text", "member_signature", "summary_line"]

_DOC_LIMIT = 2000  # characters of a docstring shown in full; longer ones are cut


def _text(value: Any, limit: int = _DOC_LIMIT) -> str:
    text = value if isinstance(value, str) else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _entries(description: dict[str, Any], key: str) -> list[dict[str, Any]]:
    found = description.get(key)
    if not isinstance(found, list):
        return []
    return [e for e in found if isinstance(e, dict) and is_valid_name(e.get("name"))]


def member_signature(entry: dict[str, Any]) -> str:
    """The ``(a, b=1) -> float`` text of a described method (never evaluated)."""
    return str(signature_from_params(entry.get("params"), entry.get("returns")))


def _first_line(doc: Any) -> str:
    text = rst.to_text(_text(doc)).strip()
    return text.splitlines()[0] if text else ""


def summary_line(name: str, description: dict[str, Any] | None, location: str) -> str:
    """One line naming the service, its class, member counts and where it is served."""
    if description is None:
        return f"redisrpc proxy {name!r} on {location} (not described)"
    methods = len(_entries(description, "methods"))
    props = len(_entries(description, "properties"))
    return (
        f"redisrpc proxy {name!r}: {_text(description.get('class'), 200) or '?'}"
        f" with {methods} method{'s' * (methods != 1)}"
        f" and {props} propert{'ies' if props != 1 else 'y'} on {location}"
    )


def _property_note(entry: dict[str, Any]) -> str:
    parts = []
    if isinstance(entry.get("annotation"), str):
        parts.append(_text(entry["annotation"], 200))
    if entry.get("readonly"):
        parts.append("read-only")
    return ", ".join(parts)


def describe_text(name: str, description: dict[str, Any] | None, location: str) -> str:
    """A readable multi-line text form: summary, docstring, methods and properties."""
    lines = [f"<{summary_line(name, description, location)}>"]
    if description is None:
        lines.append("  An original RedisRPC server: any public name is a remote call.")
        return "\n".join(lines)
    doc = rst.to_text(_text(description.get("doc"))).strip()
    if doc:
        lines.extend("  " + line for line in doc.splitlines())
    methods = _entries(description, "methods")
    if methods:
        lines.append("Methods:")
        for entry in methods:
            first = _first_line(entry.get("doc"))
            lines.append(
                f"  {entry['name']}{member_signature(entry)}" + (f"  # {first}" if first else "")
            )
    props = _entries(description, "properties")
    if props:
        lines.append("Properties:")
        for entry in props:
            note = _property_note(entry)
            first = _first_line(entry.get("doc"))
            lines.append(
                f"  {entry['name']}"
                + (f" ({note})" if note else "")
                + (f"  # {first}" if first else "")
            )
    return "\n".join(lines)


_STYLE = (
    "font-family: var(--jp-ui-font-family, sans-serif); border: 1px solid #c8c8c8;"
    " border-radius: 6px; padding: 8px 12px; max-width: 60em;"
)
_CODE = "font-family: var(--jp-code-font-family, monospace);"


def _doc_block(doc: Any) -> str:
    text = _text(doc).strip()
    if not text:
        return ""
    return (
        '<pre style="white-space: pre-wrap; margin: 2px 0 6px 1em; font-size: 90%;'
        f' {_CODE}">{rst.to_html(text)}</pre>'
    )


def describe_html(name: str, description: dict[str, Any] | None, location: str) -> str:
    """An HTML card: class, docstring, methods with signatures and docs, properties."""
    esc = html.escape
    head = f'<div class="redisrpc-proxy" style="{_STYLE}"><div><b style="{_CODE}">{esc(name)}</b>'
    if description is None:
        return (
            f"{head} <span>on {esc(location)}</span></div>"
            "<div><i>Not described: an original RedisRPC server; any public name is a remote"
            " call.</i></div></div>"
        )
    parts = [
        f'{head}: <span style="{_CODE}">{esc(_text(description.get("class"), 200))}</span>'
        f' <span style="color: #777;">on {esc(location)}'
    ]
    server = description.get("server")
    if isinstance(server, str) and server:
        parts.append(f" · served by {esc(_text(server, 200))}")
    parts.append("</span></div>")
    parts.append(_doc_block(description.get("doc")))
    methods = _entries(description, "methods")
    if methods:
        parts.append(f"<details open><summary><b>Methods</b> ({len(methods)})</summary>")
        for entry in methods:
            parts.append(
                f'<div style="{_CODE}"><b>{esc(entry["name"])}</b>'
                f"{esc(member_signature(entry))}</div>{_doc_block(entry.get('doc'))}"
            )
        parts.append("</details>")
    props = _entries(description, "properties")
    if props:
        parts.append(f"<details open><summary><b>Properties</b> ({len(props)})</summary>")
        for entry in props:
            note = _property_note(entry)
            parts.append(
                f'<div style="{_CODE}"><b>{esc(entry["name"])}</b>'
                + (f' <span style="color: #777;">({esc(note)})</span>' if note else "")
                + f"</div>{_doc_block(entry.get('doc'))}"
            )
        parts.append("</details>")
    parts.append("</div>")
    return "".join(parts)
