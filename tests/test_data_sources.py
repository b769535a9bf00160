"""Corpus sources: news, wiki, files (txt folder / jsonl / csv), cnn_dailymail via tfds."""

import json
import random
import re
import sys
import time
import types

import pytest

from recovery_jax.data import Document, get_tokenizer, load_corpus

MARKUP = ["{{", "}}", "[[", "]]", "<ref", "</ref", "'''", "&nbsp;", "<!--", "{|", "|}", "==",
          "thumb|", "<br", "__TOC__"]


# --------------------------------------------------------------------------- news


def test_news_has_300_documents():
    docs = load_corpus("news")
    assert len(docs) == 300
    assert docs.source == "news"
    assert [d.id for d in docs] == [f"lee:{i}" for i in range(300)]
    assert all(isinstance(d, Document) and d.text.strip() == d.text and d.text for d in docs)
    assert len({d.text for d in docs}) > 290


def test_limit():
    docs = load_corpus("news", limit=7)
    assert [d.id for d in docs] == [f"lee:{i}" for i in range(7)]
    with pytest.raises(ValueError, match="limit"):
        load_corpus("news", limit=0)


def test_document_is_frozen():
    d = Document("a", "b")
    with pytest.raises(Exception):
        d.text = "c"


# --------------------------------------------------------------------------- wiki


@pytest.fixture(scope="module")
def wiki():
    return load_corpus("wiki")


def test_wiki_sections(wiki):
    assert wiki.source == "wiki"
    assert len(wiki) > 1000
    ids = [d.id for d in wiki]
    assert len(set(ids)) == len(ids)
    assert all("#" in i for i in ids)
    assert "Anarchism#(lead)" in ids
    assert not any(i.split("#", 1)[1] in ("References", "External links", "See also") for i in ids)
    # Cached per process: a second load is immediate and equal.
    t0 = time.perf_counter()
    again = load_corpus("wiki")
    assert time.perf_counter() - t0 < 0.2
    assert again == wiki


def test_wiki_enough_long_clean_sections(wiki):
    gpt2 = get_tokenizer("gpt2")
    n = [len(x) for x in gpt2.encode_batch([d.text for d in wiki])]
    long_docs = [d for d, k in zip(wiki, n) if k >= 256]
    assert len(long_docs) >= 800, len(long_docs)
    rng = random.Random(0)
    for d in rng.sample(long_docs, 200):
        for m in MARKUP:
            assert m not in d.text, (d.id, m)
        assert not re.search(r"</?(ref|span|div|sup|sub|small|math|gallery)\b", d.text), d.id






# --------------------------------------------------------------------------- files


def test_txt_folder(tmp_path):
    (tmp_path / "b.txt").write_text("second doc", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first doc\nwith two lines\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("nested doc", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("  \n\t ", encoding="utf-8")
    (tmp_path / "ignored.md").write_text("not a txt", encoding="utf-8")
    docs = load_corpus("files", path=str(tmp_path))
    assert docs.source == "files"
    assert [d.id for d in docs] == ["a.txt", "b.txt", "sub/c.txt"]
    assert docs[0].text == "first doc\nwith two lines\n"
    # a single .txt file is one document
    one = load_corpus("files", path=str(tmp_path / "b.txt"))
    assert one == [Document("b.txt", "second doc")]


def test_jsonl(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"text": "alpha", "id": "x1"}, {"text": "beta"}, {"text": "   "}, {"body": "gamma", "text": "delta", "id": 7}]
    p.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + "\n".join(json.dumps(r) for r in rows[2:]) + "\n")
    docs = load_corpus("files", path=str(p))
    assert docs == [Document("x1", "alpha"), Document("2", "beta"), Document("7", "delta")]
    docs = load_corpus("files", path=str(p), limit=1)
    assert docs == [Document("x1", "alpha")]


def test_jsonl_custom_field(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"article": "one"}) + "\n" + json.dumps({"article": "two"}) + "\n")
    assert [d.text for d in load_corpus("files", path=str(p), text_field="article")] == ["one", "two"]


def test_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('id,text,other\n'
                 'r1,"a ""quoted"" doc\nspanning lines",x\n'
                 'r2,,y\n'
                 'r3,plain,z\n', encoding="utf-8")
    docs = load_corpus("files", path=str(p))
    assert docs == [Document("r1", 'a "quoted" doc\nspanning lines'), Document("r3", "plain")]
    q = tmp_path / "noid.csv"
    q.write_text("article\nfirst\n\nsecond\n")
    assert load_corpus("files", path=str(q), text_field="article") == [
        Document("2", "first"), Document("4", "second")]


# --------------------------------------------------------------------------- errors


def test_unknown_source_lists_valid():
    with pytest.raises(ValueError, match=r"unknown corpus source 'nope'.*news.*wiki.*files.*cnn_dailymail"):
        load_corpus("nope")


def test_files_without_path():
    with pytest.raises(ValueError, match="needs path="):
        load_corpus("files")


def test_files_missing_path(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="missing"):
        load_corpus("files", path=str(missing))


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unsupported file .*d\.parquet.*\.jsonl.*\.csv"):
        load_corpus("files", path=str(p))


def test_empty_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("   \n")
    with pytest.raises(ValueError, match="no documents"):
        load_corpus("files", path=str(tmp_path))
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="no documents"):
        load_corpus("files", path=str(tmp_path / "sub"))
    e = tmp_path / "e.jsonl"
    e.write_text('{"text": ""}\n\n')
    with pytest.raises(ValueError, match="no documents"):
        load_corpus("files", path=str(e))


def test_non_utf8_names_file_and_offset(tmp_path):
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "bad.txt").write_bytes(b"abc\xffdef")
    with pytest.raises(ValueError, match=r"bad\.txt.*not valid UTF-8.*byte offset 3"):
        load_corpus("files", path=str(tmp_path))
    j = tmp_path / "bad.jsonl"
    j.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl.*byte offset 28"):
        load_corpus("files", path=str(j))


def test_jsonl_missing_field(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "ok"}\n{"body": "x", "title": "y"}\n')
    with pytest.raises(ValueError, match=r"line 2: no text field 'text'; fields present: \['body', 'title'\]"):
        load_corpus("files", path=str(p))


def test_jsonl_invalid_json(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "broken\n')
    with pytest.raises(ValueError, match=r"d\.jsonl.*line 2: invalid JSON"):
        load_corpus("files", path=str(p))
    q = tmp_path / "e.jsonl"
    q.write_text('["not", "an", "object"]\n')
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        load_corpus("files", path=str(q))
    r = tmp_path / "f.jsonl"
    r.write_text('{"text": 3}\n')
    with pytest.raises(ValueError, match="line 1: field 'text' must be a string"):
        load_corpus("files", path=str(r))


def test_csv_missing_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("id,body\n1,x\n")
    with pytest.raises(ValueError, match=r"d\.csv.*line 1 \(header\): no column 'text'; columns present: \['id', 'body'\]"):
        load_corpus("files", path=str(p))
    q = tmp_path / "short.csv"
    q.write_text("id,text\n1,ok\n2\n")
    with pytest.raises(ValueError, match=r"line 3: row has 1 fields and no value for column 'text'"):
        load_corpus("files", path=str(q))


# --------------------------------------------------------------------------- cnn_dailymail


def test_cnn_dailymail_without_tfds(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install recovery_jax\[tfds\]"):
        load_corpus("cnn_dailymail")


def _fake_tfds(load):
    mod = types.ModuleType("tensorflow_datasets")
    mod.load = load
    mod.as_numpy = lambda ds: iter(ds)
    return mod


def test_cnn_dailymail_download_failure(monkeypatch):
    def load(name, **kw):
        raise ConnectionError("Name or service not known")

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(load))
    with pytest.raises(RuntimeError, match="network"):
        load_corpus("cnn_dailymail")


def test_cnn_dailymail_with_fake_tfds(monkeypatch):
    calls = []

    def load(name, split, data_dir=None, shuffle_files=False):
        calls.append((name, split, data_dir))
        arts = [b"First article.", b"  ", "Third article \xe2\x80\x94 ok".encode("latin-1")]
        return [{"article": a, "highlights": b"h"} for a in arts]

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(load))
    docs = load_corpus("cnn_dailymail", split="validation", limit=3, path="/data/tfds")
    assert calls == [("cnn_dailymail:3.0.0", "validation[:3]", "/data/tfds")]
    assert [d.id for d in docs] == ["cnn_dailymail:validation:0", "cnn_dailymail:validation:2"]
    assert docs[0].text == "First article."
    assert docs.source == "cnn_dailymail"


def test_news_path_override(tmp_path):
    p = tmp_path / "lines.cor"
    p.write_text("first article\n\n  second article  \n")
    assert load_corpus("news", path=str(p)) == [Document("lee:0", "first article"),
                                                Document("lee:2", "second article")]
    with pytest.raises(FileNotFoundError, match="nope.cor"):
        load_corpus("news", path=str(tmp_path / "nope.cor"))
