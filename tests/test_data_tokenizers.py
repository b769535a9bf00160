"""Tokenizers: offline GPT-2 / GPT-NeoX, local directories, hub errors, parity with transformers."""

import json
import shutil

import pytest

from recovery_jax.data import get_tokenizer, load_corpus
from recovery_jax.data.tokenizers import (
    GPT2_DIST,
    GPT2_ENCODER,
    GPT2_MERGES,
    NEOX_DIST,
    NEOX_FILE,
    Tokenizer,
)
from recovery_jax.data.sources import locate_asset

SAMPLES = [
    "Hello world",
    "Hello  world\n\n  tabs\t and émojis 🙂 end",
    "   leading spaces and trailing   ",
    "日本語のテキスト and Ünïcödé — dashes – “quotes”",
    "numbers 1234567 3.14159 e=mc^2 <html> {{x}} [[y|z]]",
    "special token inside: <|endoftext|> after",
    "",
]


@pytest.fixture(scope="module")
def gpt2():
    return get_tokenizer("gpt2")


@pytest.fixture(scope="module")
def neox():
    return get_tokenizer("neox")


@pytest.fixture(scope="module")
def news_texts():
    return [d.text for d in load_corpus("news")][:60]


def test_gpt2_basics(gpt2):
    assert isinstance(gpt2, Tokenizer)
    assert gpt2.name == "gpt2"
    assert gpt2.vocab_size == 50257 == len(gpt2)
    assert gpt2.pad_id == 50256 == gpt2.eos_id
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(" Hello world") == [18435, 995]
    assert gpt2.encode("<|endoftext|>") == [50256]
    assert gpt2.decode([15496, 995]) == "Hello world"


def test_neox_basics(neox):
    assert neox.vocab_size == 50277 == len(neox)
    assert neox.pad_id == 0 == neox.eos_id
    assert neox.encode("<|endoftext|>") == [0]
    ids = neox.encode("Hello world")
    assert ids == [12092, 1533]  # no BOS/EOS added
    assert neox.decode(ids) == "Hello world"


@pytest.mark.parametrize("name", ["pythia", "EleutherAI/pythia-1b", "EleutherAI/pythia-410m-deduped"])
def test_pythia_aliases_use_offline_neox(name, neox, news_texts):
    tok = get_tokenizer(name)
    assert tok.name == name
    assert tok.vocab_size == 50277 and tok.pad_id == 0
    assert tok.encode_batch(news_texts[:5]) == neox.encode_batch(news_texts[:5])


def test_gpt2_size_aliases(gpt2):
    for name in ["gpt2-large", "openai-community/gpt2"]:
        tok = get_tokenizer(name)
        assert tok.vocab_size == 50257 and tok.pad_id == 50256
        assert tok.encode(SAMPLES[1]) == gpt2.encode(SAMPLES[1])


@pytest.mark.parametrize("which", ["gpt2", "neox"])
def test_encode_batch_and_roundtrip(which, gpt2, neox, news_texts):
    tok = gpt2 if which == "gpt2" else neox
    texts = SAMPLES + news_texts[:20]
    batch = tok.encode_batch(texts)
    assert batch == [tok.encode(t) for t in texts]
    assert all(isinstance(i, int) for seq in batch for i in seq)
    for t, ids in zip(texts, batch):
        assert tok.decode(ids) == t
    assert tok.encode_batch([]) == []


def test_gpt2_parity_with_transformers(gpt2, news_texts, tmp_path):
    from transformers import GPT2TokenizerFast

    shutil.copy(locate_asset(GPT2_DIST, GPT2_ENCODER), tmp_path / "vocab.json")
    shutil.copy(locate_asset(GPT2_DIST, GPT2_MERGES), tmp_path / "merges.txt")
    hf = GPT2TokenizerFast.from_pretrained(str(tmp_path))
    assert len(hf) == gpt2.vocab_size
    texts = SAMPLES + news_texts
    ours = gpt2.encode_batch(texts)
    assert ours == [hf(t)["input_ids"] for t in texts]
    assert ours == [hf(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_neox_parity_with_transformers(neox, news_texts, tmp_path):
    from transformers import GPTNeoXTokenizerFast

    shutil.copy(locate_asset(NEOX_DIST, NEOX_FILE), tmp_path / "tokenizer.json")
    hf = GPTNeoXTokenizerFast.from_pretrained(str(tmp_path))
    assert len(hf) == neox.vocab_size == 50277
    assert hf.eos_token_id == neox.pad_id == 0
    texts = SAMPLES + news_texts
    ours = neox.encode_batch(texts)
    # The paper calls tokenizer(text) with default arguments: no BOS/EOS for Pythia.
    assert ours == [hf(t)["input_ids"] for t in texts]
    assert ours == [hf(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_local_dir_tokenizer_json(neox, tmp_path):
    shutil.copy(locate_asset(NEOX_DIST, NEOX_FILE), tmp_path / "tokenizer.json")
    tok = get_tokenizer(str(tmp_path))
    assert tok.name == str(tmp_path)
    assert tok.vocab_size == 50277 and tok.pad_id == 0
    assert tok.encode(SAMPLES[3]) == neox.encode(SAMPLES[3])


def test_local_dir_vocab_merges_with_pad_config(gpt2, tmp_path):
    shutil.copy(locate_asset(GPT2_DIST, GPT2_ENCODER), tmp_path / "vocab.json")
    shutil.copy(locate_asset(GPT2_DIST, GPT2_MERGES), tmp_path / "merges.txt")
    tok = get_tokenizer(str(tmp_path))
    assert tok.vocab_size == 50257 and tok.pad_id == 50256
    assert tok.encode(SAMPLES[1]) == gpt2.encode(SAMPLES[1])
    # As in the paper, padding uses EOS even when the folder configures another pad token;
    # the configured pad/eos tokens are read from tokenizer_config.json.
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": "!"}))
    assert get_tokenizer(str(tmp_path)).pad_id == 50256
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "!"}}))
    assert get_tokenizer(str(tmp_path)).pad_id == gpt2.encode("!")[0]


def test_missing_local_path():
    with pytest.raises(FileNotFoundError, match="no/such/tokenizer"):
        get_tokenizer("./no/such/tokenizer")


def test_empty_dir_is_clear_error(tmp_path):
    with pytest.raises(ValueError, match="tokenizer.json"):
        get_tokenizer(str(tmp_path))


def test_hub_id_offline_error_names_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="no-such-org/no-such-tokenizer"):
        get_tokenizer("no-such-org/no-such-tokenizer")


def test_bad_name():
    with pytest.raises(ValueError):
        get_tokenizer("")
