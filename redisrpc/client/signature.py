"""Rebuild :class:`inspect.Signature` objects from a ``__describe__`` payload.

The client half of the description: structured parameters become a real
signature, and text (annotations, defaults with no JSON form) is shown as is,
never evaluated.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["signature_from_params"]

_KINDS = {
    "POSITIONAL_ONLY": inspect.Parameter.POSITIONAL_ONLY,
    "POSITIONAL_OR_KEYWORD": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "VAR_POSITIONAL": inspect.Parameter.VAR_POSITIONAL,
    "KEYWORD_ONLY": inspect.Parameter.KEYWORD_ONLY,
    "VAR_KEYWORD": inspect.Parameter.VAR_KEYWORD,
}


class _Text:
    """Shows a text as is: the repr of a remote default or annotation, never evaluated."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def signature_from_params(params: Any, returns: Any = None) -> inspect.Signature:
    """Rebuild an :class:`inspect.Signature` from described parameters.

    Text (annotations, non-JSON defaults) is shown verbatim and never evaluated.
    An invalid description gives ``(*args, **kwargs)``.
    """
    fallback = inspect.Signature(
        [
            inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
            inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
        ]
    )
    if not isinstance(params, list):
        return fallback
    built = []
    try:
        for p in params:
            kind = _KINDS[p["kind"]]
            default: Any = inspect.Parameter.empty
            if "default" in p:
                default = p["default"]
            elif "default_repr" in p:
                default = _Text(str(p["default_repr"]))
            annotation: Any = inspect.Parameter.empty
            if isinstance(p.get("annotation"), str):
                annotation = _Text(p["annotation"])
            built.append(
                inspect.Parameter(str(p["name"]), kind, default=default, annotation=annotation)
            )
        return_annotation = _Text(returns) if isinstance(returns, str) else inspect.Signature.empty
        return inspect.Signature(built, return_annotation=return_annotation)
    except (KeyError, TypeError, ValueError):
        return fallback
