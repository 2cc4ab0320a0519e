"""reST inline markup of remote docstrings, shown readably as text and escaped HTML."""

from __future__ import annotations

from redisrpc.notebook.rst import segments, to_html, to_text


def test_roles_literals_and_default_role_show_what_they_name():
    """Callables get (), `~` keeps the last part, a title wins, other text is untouched."""
    cases = {
        "see :meth:`add`": "see add()",
        ":py:func:`lab.reset`": "lab.reset()",
        ":meth:`~lab.Calc.add`": "add()",
        ":class:`~lab.Calc`, :exc:`OverCurrentError`": "Calc, OverCurrentError",
        ":meth:`the adder <add>`": "the adder",
        "``x + 1`` and `y`": "x + 1 and y",
        "no markup: a*b, 3 < 4": "no markup: a*b, 3 < 4",
        "dangling ``half": "dangling ``half",
    }
    for doc, shown in cases.items():
        assert to_text(doc) == shown, doc


def test_html_escapes_every_piece():
    """Markup inside roles and around them shows as text, code pieces in <code>."""
    doc = "<script>x</script> ``<b>`` :class:`<i>`"
    assert to_html(doc) == (
        "&lt;script&gt;x&lt;/script&gt; <code>&lt;b&gt;</code> <code>&lt;i&gt;</code>"
    )
    assert segments("a ``b`` c") == [("a ", False), ("b", True), (" c", False)]
