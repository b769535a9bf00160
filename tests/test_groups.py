"""Many runs in one compiled program: each run of a group equals the same run alone (the single-run engine is
the reference), per-run restricted vocabularies padded to the largest, and what cannot be grouped."""

import json
import os

import numpy as np
import pytest

from recovery_jax import config as config_lib
from recovery_jax import runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_config.py")

# runs that differ in seed (so in documents and restricted vocabulary size), learning rate, order kind and
# token-mask probability
VARIANTS = [{}, {"seed": 1}, {"optim.lr": 3e-3, "seed": 2}, {"order.kind": "shuffled"},
            {"variant.mask_prob": 0.3, "seed": 3}]


def tiny(**over):
    return config_lib.load(TINY, [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def alone_and_grouped(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups")
    cfgs = [tiny(**v) for v in VARIANTS]
    alone = [runner.run(c, str(root / f"alone{i}"), log=lambda *a: None) for i, c in enumerate(cfgs)]
    grouped = runner.run_group(cfgs, [str(root / f"group{i}") for i in range(len(cfgs))], log=lambda *a: None)
    return root, cfgs, alone, grouped


def test_each_run_of_a_group_equals_the_run_alone(alone_and_grouped):
    root, cfgs, alone, grouped = alone_and_grouped
    vocab = {json.load(open(root / f"alone{i}" / "documents.json"))["vocab_size"] for i in range(len(cfgs))}
    assert len(vocab) > 1  # the group really pads restricted vocabularies of different sizes
    for i, cfg in enumerate(cfgs):
        a = np.load(root / f"alone{i}" / "losses.npz")
        g = np.load(root / f"group{i}" / "losses.npz")
        first_M, first_T = cfg.M, cfg.T  # the first episode, then the first epoch
        np.testing.assert_allclose(g["eval_losses"][:2], a["eval_losses"][:2], atol=1e-5, rtol=0)
        np.testing.assert_allclose(g["train_losses"][:first_M], a["train_losses"][:first_M], atol=1e-5, rtol=0)
        np.testing.assert_allclose(g["eval_losses"][: first_T + 1], a["eval_losses"][: first_T + 1], atol=1e-3, rtol=0)
        np.testing.assert_allclose(g["train_losses"][: first_T * first_M], a["train_losses"][: first_T * first_M],
                                   atol=1e-3, rtol=0)
        np.testing.assert_array_equal(g["order"], a["order"])
        np.testing.assert_allclose(grouped[i]["recovery_scores"], alone[i]["recovery_scores"], atol=0.005)
        assert grouped[i]["group_size"] == len(cfgs) and alone[i]["group_size"] == 1


def test_group_run_directories_have_the_files_of_a_single_run(alone_and_grouped):
    root, cfgs, _, _ = alone_and_grouped
    for i in range(len(cfgs)):
        assert sorted(os.listdir(root / f"group{i}")) == sorted(os.listdir(root / f"alone{i}"))
        assert json.load(open(root / f"group{i}" / "model.json")) == json.load(open(root / f"alone{i}" / "model.json"))


def test_signatures_group_what_can_be_grouped():
    base = runner.group_signature(tiny())
    for v in VARIANTS:
        assert runner.group_signature(tiny(**v)) == base, v
    assert runner.group_signature(tiny(M=3)) != base
    assert runner.group_signature(tiny(**{"optim.name": "sgd"})) != base
    assert runner.group_signature(tiny(**{"order.kind": "filler", "data.restrict_vocab": False})) != \
        runner.group_signature(tiny(**{"order.kind": "filler", "data.restrict_vocab": False, "seed": 1}))
    assert runner.group_signature(tiny(**{"probes.names": "weights", "probes.epoch": 2})) != \
        runner.group_signature(tiny(**{"probes.names": "weights", "probes.epoch": 2, "seed": 1}))


def test_runs_that_cannot_share_a_program_are_refused(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="cannot share one compiled program.*--no-group"):
        runner.run_group([tiny(), tiny(M=3)], [str(tmp_path / "a"), str(tmp_path / "b")], log=lambda *a: None)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "1,1"], "repeats a seed"),
    (["--seeds", "a"], "expected non-negative integers"),
    (["--no-group"], "--no-group only applies with --seeds"),
    (["--seeds", "0,1", "--config.probes.names=weights", "--config.probes.epoch=2"], "add --no-group"),
])
def test_train_seeds_bad_input_is_one_error_line(tmp_path, capsys, argv, message):
    from recovery_jax import cli, train

    work = tmp_path / "w"
    assert cli.guarded(train.main, ["--config", TINY, "--workdir", str(work), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not work.exists()


@pytest.mark.parametrize("argv,message", [(["--max-group", "0"], "--max-group"), (["--max-group", "x"], "--max-group")])
def test_sweep_group_flags_bad_input(tmp_path, capsys, argv, message):
    from recovery_jax import cli, sweep

    assert cli.guarded(sweep.main, ["--config", TINY, "--workdir", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
