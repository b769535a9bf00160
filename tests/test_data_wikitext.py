"""recovery_jax.data.wikitext: MediaWiki markup to prose sections."""

from recovery_jax.data.wikitext import split_sections, strip_markup


def test_strip_markup_examples():
    src = (
        "'''Foo''' is a [[bar|baz]] of [[qux]]es{{citation needed|date=May 2015}}.<ref name=\"a\">"
        "{{cite web|url=http://x}}</ref> It has {{nested|{{inner|x}}|y}}[[File:a.png|thumb|A "
        "[[caption]] here]] a [http://example.com link] and [http://bare.example] &amp;nbsp;"
        "<!-- hidden --> <small>small</small><ref name=b/>.\n"
        "{| class=\"wikitable\"\n|-\n| cell || cell\n|}\n"
        "[[Category:Things]][[de:Foo]]"
    )
    out = strip_markup(src)
    assert "Foo is a baz of quxes." in out
    assert "It has" in out and "a link and" in out and "small" in out
    for bad in ["{{", "[[", "cite", "hidden", "cell", "Category", "caption", "png", "http",
                "de:Foo", "<", "'''"]:
        assert bad not in out, bad


def test_split_sections_ids_and_dropping():
    text = (
        "Lead text is here. It is a sentence.\n"
        "== History ==\n" + "Some history sentence. " * 60 + "\n"
        "=== Early ===\nEarly sentence here.\n"
        "== See also ==\n* [[Other]]\n"
        "== History ==\nMore history.\n"
        "== Names ==\n* Alice\n* Bob\n* Carol\n"
    )
    secs = dict(split_sections("Page", text))
    assert list(secs) == ["Page#(lead)", "Page#History", "Page#Early", "Page#History (2)"]
    assert secs["Page#(lead)"] == "Lead text is here. It is a sentence."
    # A short parent section absorbs its first sub-section (title kept as a line).
    merged = dict(split_sections("P", "== A ==\nShort intro.\n=== B ===\nBody of B.\n"))
    assert merged == {"P#A": "Short intro.\n\nB\nBody of B."}
