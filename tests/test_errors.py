"""Bad input: each is one clear line on stderr, a non-zero exit, no traceback (issue 7)."""

import json
import os
import subprocess
import sys

import pytest

from recovery_jax import cli, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_config.py")


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """Tiny HF checkpoints made by transformers in-process: a good one, a truncated one, one with no
    weights, one of an unsupported architecture."""
    import torch
    import transformers
    base = tmp_path_factory.mktemp("hf")
    cfg = transformers.GPTNeoXConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, rotary_pct=0.25)
    torch.manual_seed(0)
    good = base / "good"
    transformers.GPTNeoXForCausalLM(cfg).save_pretrained(good)
    trunc = base / "truncated"
    transformers.GPTNeoXForCausalLM(cfg).save_pretrained(trunc)
    w = trunc / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    empty = base / "noweights"
    empty.mkdir()
    (empty / "config.json").write_text((good / "config.json").read_text())
    llama = base / "llama"
    llama.mkdir()
    c = json.loads((good / "config.json").read_text())
    c.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (llama / "config.json").write_text(json.dumps(c))
    return {"good": str(good), "truncated": str(trunc), "noweights": str(empty), "llama": str(llama)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("files")
    (base / "empty").mkdir()
    (base / "latin1").mkdir()
    (base / "latin1" / "a.txt").write_bytes("caf\u00e9 ".encode("latin-1") * 50)
    (base / "notext.jsonl").write_text(json.dumps({"body": "hello world " * 50}) + "\n")
    return base


def run_cli(capsys, *args):
    code = cli.guarded(train.main, ["--config", TINY, "--no-progress", *args])
    err = capsys.readouterr().err
    return code, err


CASES = [
    # (id, args (workdir appended unless given), expected message fragment)
    ("unknown-key", ["--config.optim.lrate=1"], "unknown config key 'optim.lrate'"),
    ("wrong-type", ["--config.T=many"], "--config.T='many': expected an integer"),
    ("M-zero", ["--config.M=0"], "M=0 must be >= 1"),
    ("E-negative", ["--config.E=-2"], "E=-2 must be >= 1"),
    ("lr-zero", ["--config.optim.lr=0"], "optim.lr=0.0 must be > 0.0"),
    ("eval-batch", ["--config.eval.batch=-3"], "eval.batch=-3 is not valid: -1 (auto-sized chunks), 0"),
    ("attention-block", ["--config.model.attention_block=-1"], "model.attention_block=-1 is not valid: 0"),
    ("unknown-optimizer", ["--config.optim.name=lion"], "optim.name='lion' is not valid; choose one of: sgd"),
    ("unknown-probe", ["--config.probes.names=weights,telepathy"], "unknown probe 'telepathy'"),
    ("T-too-large", ["--config.T=400"], "T=400 but only"),
    ("C-over-max-positions", ["--config.model.max_positions=8"], "C=16 is larger than the model's maximum positions (8)"),
    ("empty-corpus", ["--config.data.source=files", "--config.data.path={files}/empty"], "no documents"),
    ("non-utf8", ["--config.data.source=files", "--config.data.path={files}/latin1"], "UTF-8"),
    ("jsonl-no-field", ["--config.data.source=files", "--config.data.path={files}/notext.jsonl"], "'text'"),
    ("missing-weights", ["--config.model.init=pretrained", "--config.model.hf_path={noweights}"], "weight"),
    ("truncated-safetensors", ["--config.model.init=pretrained", "--config.model.hf_path={truncated}"], "truncated"),
    ("unsupported-arch", ["--config.model.init=pretrained", "--config.model.hf_path={llama}"], "llama"),
    ("tokenizer-larger-than-model", ["--config.model.init=pretrained", "--config.model.hf_path={good}",
                                     "--config.data.restrict_vocab=false"], "is larger than the model's (120)"),
    ("unwritable-workdir", ["--workdir", "/etc/hostname/run"], "cannot create workdir"),
    ("missing-config", ["--config", "/nonexistent.py"], "does not exist"),
]


@pytest.mark.parametrize("name,args,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(name, args, fragment, capsys, tmp_path, hf_dirs, files):
    args = [a.format(files=files, **hf_dirs) for a in args]
    if "--workdir" not in args:
        args += ["--workdir", str(tmp_path / "w")]
    code, err = run_cli(capsys, *args)
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    """The real entry point, as a user runs it."""
    p = subprocess.run([sys.executable, "-m", "recovery_jax.train", "--config", TINY, "--workdir", str(tmp_path),
                        "--config.optim.name=lion"], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: optim.name='lion' is not valid")
    assert "Traceback" not in p.stderr


def test_disk_full_keeps_earlier_files(tmp_path, monkeypatch):
    import errno

    from recovery_jax import rundir
    rd = rundir.RunDir.open(str(tmp_path), {"a": 1})
    rd.write_json("summary.json", {"x": 1})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(rundir, "_write_bytes_atomic", full)
    with pytest.raises(rundir.RunError, match="disk full while writing .*summary.json; the earlier files"):
        rd.write_json("summary.json", {"x": 2})
    rd.release()
    assert json.load(open(tmp_path / "summary.json")) == {"x": 1}
