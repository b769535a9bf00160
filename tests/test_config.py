import glob
import os
import re

import pytest

from recovery_jax import config as C

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# run configs; configs/pretrain/ holds pretraining configs (tests/test_pretrain.py)
CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
                 if os.sep + "pretrain" + os.sep not in p)


def test_there_are_configs():
    assert any(p.endswith("default.py") for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_config_loads_and_validates(path):
    cfg = C.load(path)
    assert cfg.T >= 1 and cfg.M >= 1
    doc = open(path).read().split('"""')[1]
    assert "python -m recovery_jax." in doc, "the docstring must give the run command"


def test_overrides_are_typed():
    cfg = C.load(os.path.join(ROOT, "configs/default.py"), ["T=10", "optim.lr=3e-4", "data.restrict_vocab=false",
                                                           "optim.name=sgd"])
    assert cfg.T == 10 and cfg.optim.lr == 3e-4 and cfg.data.restrict_vocab is False and cfg.optim.name == "sgd"


def test_split_argv():
    o, rest = C.split_argv(["--config", "x.py", "--config.T=3", "--config.M", "4", "--resume"])
    assert o == ["T=3", "M=4"] and rest == ["--config", "x.py", "--resume"]


@pytest.mark.parametrize("override,message", [
    ("Tee=3", "unknown config key 'Tee'"),
    ("optim.lrr=3", "unknown config key 'optim.lrr'"),
    ("T=ten", "expected an integer"),
    ("T=2.5", "expected an integer"),
    ("optim.lr=fast", "expected a number"),
    ("data.restrict_vocab=maybe", "expected a boolean"),
    ("T=0", "T=0 must be >= 1"),
    ("M=0", "M=0 must be >= 1"),
    ("E=-1", "E=-1 must be >= 1"),
    ("optim.lr=0", "optim.lr=0.0 must be > 0.0"),
    ("optim.lr=-1e-3", "optim.lr=-0.001 must be > 0.0"),
    ("optim.name=lion", "optim.name='lion' is not valid; choose one of: sgd"),
    ("order.kind=zigzag", "order.kind='zigzag' is not valid"),
    ("probes.names=weights,brain", "unknown probe 'brain'"),
    ("variant.mask_prob=1.0", "must be < 1"),
    ("variant.window=64", "raise data.block"),
    ("data.block=10", "data.block=10 must be 0 or >= C"),
    ("model.init=pretrained", "needs model.hf_path"),
    ("order.kind=partial", "order.shuffle_n=0 must be in [2, T=25]"),
])
def test_validation_errors(override, message):
    with pytest.raises(C.ConfigError) as e:
        C.load(os.path.join(ROOT, "configs/default.py"), [override])
    assert message in str(e.value)


def test_config_file_with_unknown_key(tmp_path):
    p = tmp_path / "bad.py"
    p.write_text("from recovery_jax.config import base_config\n"
                 "def get_config():\n    c = base_config()\n    c.optim.lrate = 1.0\n    return c\n")
    with pytest.raises(C.ConfigError, match="unknown config key 'optim.lrate'"):
        C.load(str(p))


def test_missing_config_file():
    with pytest.raises(C.ConfigError, match="does not exist"):
        C.load("/nonexistent/cfg.py")


def test_dict_round_trip():
    cfg = C.load(os.path.join(ROOT, "configs/default.py"))
    assert C.to_dict(C.from_dict(C.to_dict(cfg))) == C.to_dict(cfg)


def test_with_defaults_fills_keys_an_older_config_lacks():
    old = C.to_dict(C.base_config())
    del old["model"]["matmul_precision"]
    old["T"] = 7
    new = C.with_defaults(old)
    assert new["model"]["matmul_precision"] == "highest" and new["T"] == 7
    assert C.with_defaults({"retired_key": 1})["retired_key"] == 1  # kept, so it shows up as a difference


@pytest.mark.parametrize("name,text,message", [
    ("notes.txt", "get_config = 1\n", "is not a Python file"),
    ("returns_dict.py", "def get_config():\n    return {'T': 3}\n", "must return an ml_collections.ConfigDict"),
    ("raises.py", "def get_config():\n    raise RuntimeError('boom')\n", "failed to load: RuntimeError: boom"),
    ("no_get_config.py", "x = 1\n", "has no get_config() function"),
])
def test_bad_config_files_are_one_config_error(tmp_path, name, text, message):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(C.ConfigError, match=re.escape(message)):
        C.load(str(p))


def test_overrides_through_config_flags_keep_our_spellings():
    cfg = C.load(os.path.join(ROOT, "configs/default.py"), ["T=1e1", "data.restrict_vocab=no", "progress=yes",
                                                           "optim.lr=1"])
    assert cfg.T == 10 and cfg.data.restrict_vocab is False and cfg.progress is True and cfg.optim.lr == 1.0
    with pytest.raises(C.ConfigError, match="--config.T needs a value"):
        C.split_argv(["--config.T", "--workdir", "x"])
