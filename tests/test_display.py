"""Rich proxy display: the HTML card and pretty text come from the cached description only."""

from __future__ import annotations

import IPython.lib.pretty
import pytest
from IPython.core.formatters import DisplayFormatter

import redisrpc
from redisrpc.instruments import PowerSupply
from redisrpc.notebook.display import describe_html, describe_text


class Greeter:
    """Says hello <b>loudly</b>.

    Second paragraph of the docs.
    """

    def __init__(self) -> None:
        self.greeting = "hello"

    def greet(self, name: str, times: int = 1, *, shout: bool = False) -> str:
        """Greet ``name`` a number of times."""
        return " ".join([self.greeting + " " + name] * times)

    @property
    def mood(self) -> str:
        """The current mood."""
        return "fine"


@pytest.fixture
def greeter(r, serve):
    """A described proxy of a served Greeter."""
    serve(Greeter(), "greeter")
    return redisrpc.Client(r, "greeter", timeout=5)


def test_html_card_lists_class_docs_methods_properties(greeter):
    """The card names the service and class, escapes the docstring, shows signatures and docs."""
    card = greeter._repr_html_()
    assert "<b" in card and "greeter" in card and "Greeter" in card
    assert "Says hello &lt;b&gt;loudly&lt;/b&gt;." in card  # escaped, not markup
    assert "<b>loudly</b>" not in card
    assert "greet</b>(name: str, times: int = 1, *, shout: bool = False) -&gt; str" in card
    assert "Greet <code>name</code> a number of times." in card
    assert "mood</b>" in card and "The current mood." in card and "read-only" in card
    assert "clr" not in card  # nothing invented


def test_display_makes_no_network_call(own_redis):
    """Rendering after Redis went away still works: it reads only the cached description."""
    with redisrpc.Server(own_redis.url, "greeter", Greeter(), poll_interval=0.1):
        greeter = redisrpc.Client(own_redis.url, "greeter", timeout=5)
        own_redis.stop()
        assert "greet" in greeter._repr_html_()
        assert "greet(name: str" in IPython.lib.pretty.pretty(greeter)
        assert "greeter" in repr(greeter)
        own_redis.start()  # the server's clean stop deregisters


def test_pretty_text_form(greeter):
    """IPython's pretty form has a summary line, the docs, each method and property."""
    text = IPython.lib.pretty.pretty(greeter)
    lines = text.splitlines()
    assert lines[0].startswith("<redisrpc proxy 'greeter': Greeter with 1 method and 2 properties")
    assert "Methods:" in lines
    assert "  greet(name: str, times: int = 1, *, shout: bool = False) -> str" in text
    assert "# Greet name a number of times." in text
    assert "  mood (str, read-only)  # The current mood." in lines
    assert "  greeting (str, read-only)" in lines  # plain attributes: read-only unless marked


def test_ipython_formatter_uses_the_card(greeter):
    """IPython's display formatter picks up both the HTML and the plain-text forms."""
    data, _ = DisplayFormatter().format(greeter)
    assert "text/html" in data and "Greeter" in data["text/html"]
    assert data["text/plain"].startswith("<redisrpc proxy 'greeter'")


def test_undescribed_proxy(r, serve):
    """A proxy with describe=False says it is not described, in every form."""
    serve(Greeter(), "greeter")
    proxy = redisrpc.Client(r, "greeter", timeout=5, describe=False)
    assert "Not described" in proxy._repr_html_()
    assert "not described" in IPython.lib.pretty.pretty(proxy)


def test_hostile_description_is_escaped():
    """Markup in any field of a description is escaped; malformed members are skipped."""
    evil = "<script>alert(1)</script>"
    description = {
        "class": evil,
        "doc": evil,
        "server": evil,
        "methods": [
            {
                "name": "ok",
                "doc": evil,
                "params": [{"name": "x", "kind": "POSITIONAL_OR_KEYWORD", "annotation": evil}],
            },
            {"name": "<img src=x>", "doc": "bad name"},
            "not a dict",
        ],
        "properties": [{"name": "p", "doc": evil, "annotation": evil}],
    }
    card = describe_html(evil, description, evil)
    assert "<script>" not in card and "<img" not in card
    assert card.count("&lt;script&gt;") >= 7
    text = describe_text("svc", description, "here")
    assert "ok(x: <script>alert(1)</script>)" in text  # plain text shows it verbatim
    assert "bad name" not in text


def test_real_driver_card_shows_units():
    """The card of a simulated instrument shows its units and limits from the docstrings."""
    server = redisrpc.Server(None, "psu", PowerSupply(), register=False)
    card = describe_html("psu", server.describe(), "nowhere")
    assert "voltage1" in card and "(0 to 30 V)" in card and "over-current" in card


SPHINX_DOC = {
    "class": "Calc",
    "doc": "Use :meth:`add` with ``number``; see :class:`~lab.calc.Calc` and `total`.",
    "methods": [
        {
            "name": "add",
            "params": [{"name": "number", "kind": "POSITIONAL_OR_KEYWORD"}],
            "doc": "Add ``number``; :func:`reset <lab.reset>` clears <b>it</b>.",
        }
    ],
    "properties": [{"name": "total", "doc": "Sum so far, see :meth:`add`."}],
}


def test_rest_roles_read_as_what_they_name_in_card_and_text():
    """:meth:`x` reads x(), :class:`~a.B` reads B, double backquotes their text; all escaped."""
    text = describe_text("calc", SPHINX_DOC, "lab:6379")
    assert "Use add() with number; see Calc and total." in text
    assert "add(number)  # Add number; reset clears <b>it</b>." in text
    assert "total  # Sum so far, see add()." in text
    card = describe_html("calc", SPHINX_DOC, "lab:6379")
    assert "Use <code>add()</code> with <code>number</code>; see <code>Calc</code>" in card
    assert "<code>reset</code> clears &lt;b&gt;it&lt;/b&gt;." in card
    for raw in (":meth:", ":class:", ":func:", "``"):
        assert raw not in text and raw not in card, raw
