"""recovery_jax.sweep: spec expansion, naming, resume/skip/reuse, aggregation, errors, one real tiny sweep."""

import json
import os

import pytest

from recovery_jax import config as C
from recovery_jax import sweep as S
from recovery_jax.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_BASE = os.path.join(ROOT, "configs", "cpu", "base.py")
TINY = ["T=3", "C=16", "M=2", "E=2", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=64"]


def write_config(tmp_path, sweep_src: str | None, name="cfg.py", extra="") -> str:
    """A config file deriving from configs/cpu/base.py with the given get_sweep() body."""
    body = (
        '"""Test sweep.\n\n    python -m recovery_jax.sweep --config X --workdir Y\n"""\n'
        "from recovery_jax.config import derive\n\n"
        "def get_config():\n"
        f"    c = derive(__file__, {CPU_BASE!r})\n"
        f"{extra}"
        "    return c\n"
    )
    if sweep_src is not None:
        body += f"\ndef get_sweep():\n    return {sweep_src}\n"
    p = tmp_path / name
    p.write_text(body)
    return str(p)


# ----------------------------------------------------------------------------- expansion and naming


def test_grid_is_a_cartesian_product_with_seeds(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1, 5], "optim.lr": [1e-3, 3e-4]}, "seeds": [0, 1]}')
    runs, spec = S.build_runs(path)
    names = [r.name for r in runs]
    assert names == [
        "M=1/optim.lr=0.001/seed=0", "M=1/optim.lr=0.001/seed=1", "M=1/optim.lr=0.0003/seed=0",
        "M=1/optim.lr=0.0003/seed=1", "M=5/optim.lr=0.001/seed=0", "M=5/optim.lr=0.001/seed=1",
        "M=5/optim.lr=0.0003/seed=0", "M=5/optim.lr=0.0003/seed=1"]
    r = runs[6]
    assert r.cfg.M == 5 and r.cfg.optim.lr == 3e-4 and r.cfg.seed == 0 and r.cfg.progress is False
    assert r.point.overrides == {"M": 5, "optim.lr": 3e-4}


def test_zip_pairs_values(tmp_path):
    path = write_config(tmp_path, '{"zip": {"M": [1, 5, 10], "optim.lr": [1e-2, 2e-3, 1e-3]}, "seeds": [0]}')
    runs, _ = S.build_runs(path)
    assert [(r.cfg.M, r.cfg.optim.lr) for r in runs] == [(1, 1e-2), (5, 2e-3), (10, 1e-3)]
    assert runs[1].name == "M=5/optim.lr=0.002/seed=0"


def test_variants_combine_with_the_grid(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1, 2]}, "variants": {"cyclic": {}, '
                                  '"shuffled": {"order.kind": "shuffled"}}, "seeds": [3]}')
    runs, _ = S.build_runs(path)
    assert [r.name for r in runs] == ["cyclic/M=1/seed=3", "cyclic/M=2/seed=3", "shuffled/M=1/seed=3",
                                      "shuffled/M=2/seed=3"]
    assert [r.cfg.order.kind for r in runs] == ["cyclic", "cyclic", "shuffled", "shuffled"]
    assert runs[2].point.variant == "shuffled"
    only, _ = S.build_runs(path, variants=["shuffled"])
    assert {r.cfg.order.kind for r in only} == {"shuffled"} and len(only) == 2


def test_no_get_sweep_means_the_config_times_seeds(tmp_path):
    path = write_config(tmp_path, None)
    runs, _ = S.build_runs(path)
    assert [r.name for r in runs] == ["seed=0"]
    runs, _ = S.build_runs(path, seeds=[4, 5])
    assert [r.name for r in runs] == ["seed=4", "seed=5"] and [r.cfg.seed for r in runs] == [4, 5]


def test_cli_seeds_override_the_spec_and_overrides_apply(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1, 2]}, "seeds": [0, 1, 2]}')
    runs, _ = S.build_runs(path, ["T=5", "optim.lr=1e-3"], seeds=[7])
    assert [r.name for r in runs] == ["M=1/seed=7", "M=2/seed=7"]
    assert all(r.cfg.T == 5 and r.cfg.optim.lr == 1e-3 for r in runs)


def test_override_of_a_swept_key_pins_that_axis(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1, 2, 5]}, "zip": {"C": [16, 32], "T": [3, 4]}, "seeds": [0]}')
    runs, _ = S.build_runs(path, ["M=2", "C=32"])
    assert [r.name for r in runs] == ["C=32/T=4/M=2/seed=0"]
    with pytest.raises(ConfigError, match="none of the sweep's paired values"):
        S.build_runs(path, ["C=64"])


def test_command_line_beats_a_variant_value(tmp_path):
    path = write_config(tmp_path, '{"variants": {"sgd": {"optim.name": "sgd", "optim.lr": 0.1}}, "seeds": [0]}')
    runs, _ = S.build_runs(path, ["optim.lr=0.05"])
    assert runs[0].cfg.optim.name == "sgd" and runs[0].cfg.optim.lr == 0.05


@pytest.mark.parametrize("value,text", [(0.001, "0.001"), (1e-5, "1e-05"), (3e-4, "0.0003"), (True, "true"),
                                        (10, "10"), ("pythia-1b", "pythia-1b"), ("a/b c", "a_b_c"),
                                        ("EleutherAI/pythia-1b", "EleutherAI_pythia-1b")])
def test_format_value(value, text):
    assert S.format_value(value) == text


@pytest.mark.parametrize("text,seeds", [("0,1,2", [0, 1, 2]), ("0-3", [0, 1, 2, 3]), ("5", [5]),
                                        ("0,3-4", [0, 3, 4])])
def test_parse_seeds(text, seeds):
    assert S.parse_seeds(text) == seeds


@pytest.mark.parametrize("text,message", [("a", "expected non-negative integers"), ("", "gives no seed"),
                                          ("1,1", "repeats a seed"), ("3-1", "bad range")])
def test_parse_seeds_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        S.parse_seeds(text)


# ----------------------------------------------------------------------------- user errors


@pytest.mark.parametrize("spec,message", [
    ('{"grid": {"MM": [1]}}', "sweep grid key 'MM' is not a config key"),
    ('{"grid": {"optim.lrate": [1]}}', "sweep grid key 'optim.lrate' is not a config key"),
    ('{"grid": {"lr": [1e-3]}}', "did you mean 'optim.lr'"),
    ('{"grid": {"M": []}}', "sweep grid['M'] is an empty list"),
    ('{"grid": {}}', "sweep grid is empty"),
    ('{"grid": {"M": 5}}', "must be a list of values"),
    ('{"grid": {"M": ["five"]}}', "M='five' has type str; M expects int"),
    ('{"grid": {"optim.lr": ["fast"]}}', "expects float"),
    ('{"grid": {"data.restrict_vocab": [1]}}', "expects bool"),
    ('{"grid": {"seed": [0, 1]}}', "give seeds as"),
    ('{"grid": {"M": [0]}}', "sweep run 'M=0/seed=0': M=0 must be >= 1"),
    ('{"grid": {"optim.name": ["lion"]}}', "optim.name='lion' is not valid"),
    ('{"zip": {"M": [1, 2], "optim.lr": [1e-3]}}', "zip lists must have the same length"),
    ('{"grid": {"M": [1]}, "zip": {"M": [2]}}', "in both grid and zip"),
    ('{"variants": {"a b": {}}}', "variant name 'a b'"),
    ('{"variants": {"x": {"order.knd": "shuffled"}}}', "not a config key"),
    ('{"variants": {"x": {"M": 2}}, "grid": {"M": [1]}}', "which the grid/zip also sweeps"),
    ('{"variants": {}}', "sweep variants is empty"),
    ('{"seeds": []}', "non-empty list"),
    ('{"seeds": [0, -1]}', "non-negative integers"),
    ('{"grids": {"M": [1]}}', "unknown part(s) ['grids']"),
    ('[1, 2]', "must return a dict"),
    ('{"grid": {"M": [1, 1.0]}}', "same run name twice"),
])
def test_spec_errors(tmp_path, spec, message):
    path = write_config(tmp_path, spec)
    with pytest.raises(ConfigError) as e:
        S.build_runs(path)
    assert message in str(e.value)


def test_unknown_variant_and_missing_file(tmp_path):
    path = write_config(tmp_path, '{"variants": {"a": {}}}')
    with pytest.raises(ConfigError, match=r"unknown variant\(s\) \['b'\]"):
        S.build_runs(path, variants=["b"])
    with pytest.raises(ConfigError, match="does not exist"):
        S.build_runs(str(tmp_path / "nope.py"))


def test_broken_config_file(tmp_path):
    p = tmp_path / "bad.py"
    p.write_text("def get_config():\n    return 1/0\n")
    with pytest.raises(ConfigError, match="failed to load: ZeroDivisionError"):
        S.build_runs(str(p))


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    from recovery_jax import cli
    path = write_config(tmp_path, '{"grid": {"Mx": [1]}}')
    rc = cli.guarded(S.main, ["--config", path, "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: sweep grid key 'Mx'") and "Traceback" not in err


def test_dry_run_lists_runs_and_runs_nothing(tmp_path, capsys):
    path = write_config(tmp_path, '{"grid": {"M": [1, 2]}, "seeds": [0]}')
    assert S.main(["--config", path, "--workdir", str(tmp_path / "w"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 run(s)" in out and "M=1/seed=0" in out and "new" in out
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- resume / skip / reuse


def fake_summary(rs, online=2.0, drop=0.3, pt=False):
    return {"recovery_scores": rs, "rs_last": rs[-1] if rs else None, "online_loss": {"mean": online},
            "revisit_doc0": {"last_rel_drop": drop}, "positive_transfer": {"last": pt},
            "mean_loss_final": 1.0}


class FakeRunner:
    """Stands in for runner.run: writes config.json and summary.json like a finished run."""

    def __init__(self, fail_on=()):
        self.calls = []
        self.fail_on = set(fail_on)

    def __call__(self, cfg, run_dir, *, resume, overwrite):
        from recovery_jax.rundir import RunError
        self.calls.append((os.path.relpath(run_dir), resume, overwrite))
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(C.to_dict(cfg), f)
        if cfg.M in self.fail_on:
            raise RunError(f"non-finite loss in episode 3 with M={cfg.M}")
        s = fake_summary([0.1 * cfg.M, 0.2 * cfg.M + 0.01 * cfg.seed])
        with open(os.path.join(run_dir, "summary.json"), "w") as f:
            json.dump(s, f)
        return s


def test_execute_skips_finished_runs_and_resumes_unfinished(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1, 2]}, "seeds": [0, 1]}')
    runs, _ = S.build_runs(path)
    wd = str(tmp_path / "w")
    fake = FakeRunner()
    recs = S.execute(runs, wd, run_fn=fake, log=lambda m: None)
    assert [r["status"] for r in recs] == ["ran"] * 4 and len(fake.calls) == 4
    assert all(resume is False for _, resume, _ in fake.calls)
    assert json.load(open(os.path.join(wd, "M=1", "seed=0", S.SWEEP_FILE)))["status"] == "ran"

    # an interrupted run: config.json but no summary.json -> resumed; the others are skipped
    os.unlink(os.path.join(wd, "M=2", "seed=1", "summary.json"))
    fake2 = FakeRunner()
    lines = []
    recs = S.execute(runs, wd, run_fn=fake2, log=lines.append)
    assert [r["status"] for r in recs] == ["skipped", "skipped", "skipped", "resumed"]
    assert len(fake2.calls) == 1 and fake2.calls[0][1] is True and fake2.calls[0][0].endswith("M=2/seed=1")
    assert recs[0]["summary"]["rs_last"] == pytest.approx(0.2)
    assert "done already" in lines[0] and "RS 0.200" in lines[0]

    # --overwrite reruns everything from scratch
    fake3 = FakeRunner()
    recs = S.execute(runs, wd, run_fn=fake3, overwrite=True, log=lambda m: None)
    assert len(fake3.calls) == 4 and all(ow for _, _, ow in fake3.calls)


def test_execute_refuses_a_workdir_of_another_config(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1]}, "seeds": [0]}')
    runs, _ = S.build_runs(path)
    wd = str(tmp_path / "w")
    S.execute(runs, wd, run_fn=FakeRunner(), log=lambda m: None)
    changed, _ = S.build_runs(path, ["optim.lr=1e-3"])
    assert S.run_status(os.path.join(wd, "M=1", "seed=0"), changed[0].cfg) == "changed"
    with pytest.raises(ConfigError, match="hold runs of a different config"):
        S.execute(changed, wd, run_fn=FakeRunner(), log=lambda m: None)
    # another evaluation chunk size / attention block computes the same thing: still this config's run
    faster, _ = S.build_runs(path, ["eval.batch=3", "model.attention_block=0"])
    assert S.run_status(os.path.join(wd, "M=1", "seed=0"), faster[0].cfg) == "done"


def test_normalized_config_fills_new_keys_drops_retired_ones_and_types_numbers():
    from recovery_jax import config as config_lib

    stored = config_lib.to_dict(config_lib.base_config())
    stored["optim"]["lr"] = 1  # an int written where the schema has a float
    stored["retired_key"] = 5
    del stored["model"]["matmul_precision"]  # a key added after this run was written
    n = S.normalized_config(stored)
    assert n["optim.lr"] == 1.0 and isinstance(n["optim.lr"], float)
    assert "retired_key" not in n
    assert n["model.matmul_precision"] == config_lib.base_config().model.matmul_precision
    assert not set(config_lib.PERFORMANCE_KEYS) & set(n)
    # where a pretrained model would come from does not matter to a run from scratch, and does to a pretrained one
    scratch = config_lib.to_dict(config_lib.base_config())
    other = config_lib.to_dict(config_lib.base_config())
    other["model"].update(hf_path="runs/pretrain/x", revision="step30")
    assert S.normalized_config(scratch) == S.normalized_config(other)
    scratch["model"]["init"] = other["model"]["init"] = "pretrained"
    scratch["model"]["hf_path"] = "runs/pretrain/y"
    assert S.normalized_config(scratch) != S.normalized_config(other)


def test_the_final_revision_of_a_local_pretraining_is_its_top_level_checkpoint(tmp_path):
    """A pretrained run at revision stepN whose files are the directory's top-level ones (recovery_jax.pretrain
    hard-links the final revision there) is the same run as one without a revision (fig16's step600 = fig2a's
    pretrained runs, reused); another revision, or a copy that is not the same file, stays a different run."""
    from recovery_jax import config as config_lib

    w = tmp_path / "pre"
    for rev, text in (("step1", "a"), ("step2", "b")):
        (w / rev).mkdir(parents=True)
        for name in ("model.safetensors", "config.json"):
            (w / rev / name).write_text(text + name)
    for name in ("model.safetensors", "config.json"):
        os.link(w / "step2" / name, w / name)

    def cfg(revision, path=str(w)):
        d = config_lib.to_dict(config_lib.base_config())
        d["model"].update(init="pretrained", hf_path=path, revision=revision)
        return S.normalized_config(d)

    assert cfg("step2") == cfg("")
    assert cfg("step1") != cfg("")
    assert cfg("step2", str(tmp_path / "missing")) != cfg("", str(tmp_path / "missing"))
    (w / "step3").mkdir()
    for name in ("model.safetensors", "config.json"):
        (w / "step3" / name).write_text((w / name).read_text())  # equal bytes, another file: not assumed equal
    assert cfg("step3") != cfg("")


def test_failed_runs_are_recorded_and_the_sweep_goes_on(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1, 2, 3]}, "seeds": [0]}')
    runs, _ = S.build_runs(path)
    recs = S.execute(runs, str(tmp_path / "w"), run_fn=FakeRunner(fail_on={2}), log=lambda m: None)
    assert [r["status"] for r in recs] == ["ran", "failed", "ran"]
    assert "non-finite loss" in recs[1]["error"]
    summ = S.summarize_sweep(recs, runs, config_path=path, workdir="w", seeds=[0], command="x")
    assert summ["n_runs"] == 3 and summ["n_runs_done"] == 2
    assert [g["stats"]["n"] for g in summ["groups"]] == [1, 0, 1]
    assert "Failed runs" in S.summary_markdown(summ)


def test_reuse_copies_a_finished_run_of_the_same_config(tmp_path):
    path_a = write_config(tmp_path, '{"grid": {"M": [1, 2]}, "seeds": [0]}', name="a.py")
    path_b = write_config(tmp_path, '{"grid": {"M": [2, 3]}, "seeds": [0]}', name="b.py")
    root = tmp_path / "runs"
    runs_a, _ = S.build_runs(path_a)
    S.execute(runs_a, str(root / "a"), run_fn=FakeRunner(), log=lambda m: None)
    runs_b, _ = S.build_runs(path_b)
    fake = FakeRunner()
    recs = S.execute(runs_b, str(root / "b"), run_fn=fake, log=lambda m: None, reuse_root=str(root))
    assert [r["status"] for r in recs] == ["reused", "ran"]
    assert len(fake.calls) == 1 and fake.calls[0][0].endswith("M=3/seed=0")
    assert recs[0]["reused_from"].endswith(os.path.join("a", "M=2", "seed=0"))
    assert os.path.exists(root / "b" / "M=2" / "seed=0" / "summary.json")
    assert recs[0]["summary"]["rs_last"] == pytest.approx(0.4)
    # the copy is a finished run of its config now: skipped next time
    again = S.execute(runs_b, str(root / "b"), run_fn=FakeRunner(), log=lambda m: None, reuse_root=str(root))
    assert [r["status"] for r in again] == ["skipped", "skipped"]


# ----------------------------------------------------------------------------- aggregation








def test_summary_markdown_has_one_row_per_point(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1, 2]}, "seeds": [0, 1]}')
    runs, _ = S.build_runs(path)
    recs = S.execute(runs, str(tmp_path / "w"), run_fn=FakeRunner(), log=lambda m: None)
    summ = S.summarize_sweep(recs, runs, config_path=path, workdir="w", seeds=[0, 1], command="cmd")
    g = {x["name"]: x["stats"] for x in summ["groups"]}
    assert g["M=2"]["rs_last"]["mean"] == pytest.approx(0.405) and g["M=2"]["rs_last"]["std"] == pytest.approx(0.005)
    md = S.summary_markdown(summ)
    assert "| M=1 | 2 | 0.205 ± 0.005 | 0.100 | 0.205 |" in md
    assert "| M=2 | 2 | 0.405 ± 0.005 |" in md


# ----------------------------------------------------------------------------- the real thing, tiny


def test_real_tiny_sweep_end_to_end(tmp_path, capsys, monkeypatch):
    path = write_config(tmp_path, '{"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}}, "seeds": [0]}')
    wd = str(tmp_path / "w")
    argv = ["--config", path, "--workdir", wd] + [f"--config.{o}" for o in TINY] + ["--config.T=4"]
    assert S.main(argv) == 0
    out = capsys.readouterr().out
    assert "[1/2] cyclic/seed=0" in out and "RS " in out
    for name in ("cyclic/seed=0", "shuffled/seed=0"):
        assert os.path.exists(os.path.join(wd, name, "summary.json"))
        assert os.path.exists(os.path.join(wd, name, "losses.npz"))
    summ = json.load(open(os.path.join(wd, "sweep_summary.json")))
    assert summ["n_runs_done"] == 2 and [g["name"] for g in summ["groups"]] == ["cyclic", "shuffled"]
    assert summ["groups"][0]["stats"]["rs_last"]["n"] == 1
    assert os.path.exists(os.path.join(wd, "sweep_summary.md"))

    # a second call skips both runs and (with --report) hands all run dirs to the report module
    seen = {}

    def fake_report(dirs, out, title=None, doc=0):
        seen["dirs"], seen["out"] = list(dirs), out
        return os.path.join(out, "report.md")

    from recovery_jax import report
    monkeypatch.setattr(report, "build_report", fake_report)
    assert S.main(argv + ["--report"]) == 0
    out = capsys.readouterr().out
    assert out.count("done already") == 2
    assert len(seen["dirs"]) == 2 and seen["out"] == os.path.join(wd, "report")


def test_a_run_from_before_a_schema_change_still_counts_as_done(tmp_path):
    """A key added to the schema after a run was written takes its default; a removed key is ignored."""
    path = write_config(tmp_path, '{"grid": {"M": [1]}, "seeds": [0]}')
    runs, _ = S.build_runs(path)
    wd = str(tmp_path / "w")
    S.execute(runs, wd, run_fn=FakeRunner(), log=lambda m: None)
    cfg_path = os.path.join(wd, "M=1", "seed=0", "config.json")
    stored = json.load(open(cfg_path))
    del stored["model"]["dtype"]  # as if model.dtype did not exist yet (its default applies)
    stored["model"]["retired_key"] = 1  # as if a key had been removed since
    stored["optim"]["min_lr"] = 0  # JSON int for a float key
    json.dump(stored, open(cfg_path, "w"))
    assert S.run_status(os.path.dirname(cfg_path), runs[0].cfg) == "done"
    stored["model"]["dtype"] = "bfloat16"  # a real difference
    json.dump(stored, open(cfg_path, "w"))
    assert S.run_status(os.path.dirname(cfg_path), runs[0].cfg) == "changed"


def test_a_copied_run_gets_its_config_in_todays_schema(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [2]}, "seeds": [0]}')
    runs, _ = S.build_runs(path)
    root = tmp_path / "runs"
    S.execute(runs, str(root / "a"), run_fn=FakeRunner(), log=lambda m: None)
    old = root / "a" / "M=2" / "seed=0" / "config.json"
    stored = json.load(open(old))
    del stored["model"]["dtype"]  # written before model.dtype existed
    json.dump(stored, open(old, "w"))
    recs = S.execute(runs, str(root / "b"), run_fn=FakeRunner(), log=lambda m: None, reuse_root=str(root / "a"))
    assert recs[0]["status"] == "reused"
    assert json.load(open(root / "b" / "M=2" / "seed=0" / "config.json")) == C.to_dict(runs[0].cfg)


def test_an_unfinished_run_from_before_a_schema_change_is_resumed_in_todays_schema(tmp_path):
    path = write_config(tmp_path, '{"grid": {"M": [1]}, "seeds": [0]}')
    runs, _ = S.build_runs(path)
    run_dir = tmp_path / "w" / "M=1" / "seed=0"
    run_dir.mkdir(parents=True)
    old = C.to_dict(runs[0].cfg)
    del old["model"]["dtype"]
    json.dump(old, open(run_dir / "config.json", "w"))
    fake = FakeRunner()
    recs = S.execute(runs, str(tmp_path / "w"), run_fn=fake, log=lambda m: None)
    assert recs[0]["status"] == "resumed" and fake.calls[0][1] is True


def test_dry_run_shows_runs_that_would_be_copied(tmp_path, capsys):
    path = write_config(tmp_path, '{"grid": {"M": [1, 2]}, "seeds": [0]}')
    runs, _ = S.build_runs(path)
    S.execute(runs[:1], str(tmp_path / "runs" / "a"), run_fn=FakeRunner(), log=lambda m: None)
    S.main(["--config", path, "--workdir", str(tmp_path / "runs" / "b"), "--dry-run", "--reuse", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert "M=1/seed=0" in out and " copy " in out and " new " in out


# ----------------------------------------------------------------------------- groups

TINY_SWEEP = os.path.join(ROOT, "tests", "tiny_sweep.py")


def _pending(runs, wd, status="new"):
    return [(i, r, os.path.join(wd, r.name), status) for i, r in enumerate(runs)]


def test_plan_groups_resumes_runs_in_the_group_they_started_in(tmp_path):
    runs, _ = S.build_runs(TINY_SWEEP, seeds=[0, 1, 2])  # cyclic/shuffled x 3 seeds: one signature
    wd = str(tmp_path)
    idx = lambda batches: [[item[0] for item in b] for b in batches]  # noqa: E731
    assert idx(S.plan_groups(_pending(runs, wd), None)) == [[0, 1, 2, 3, 4, 5]]
    assert idx(S.plan_groups(_pending(runs, wd), 2)) == [[0, 1], [2, 3], [4, 5]]
    # started runs resume in the group they started in (a group's numbers are bit for bit only with the same
    # members), never merged with another group's runs at the same checkpoint
    names = [r.name for r in runs]
    for i, group in ((0, names[:3]), (1, names[:3]), (3, names[3:]), (4, names[3:])):
        os.makedirs(os.path.join(wd, names[i]))
        with open(os.path.join(wd, names[i], S.SWEEP_FILE), "w") as f:
            json.dump({"name": names[i], "status": "running", "group": group}, f)
    partial = _pending(runs, wd, "partial")
    assert idx(S.plan_groups([p for p in partial if p[0] in (0, 1, 3, 4)], None)) == [[0, 1], [3, 4]]
    # runs started by an older sweep (no members stored) group as before: by signature and checkpoint
    assert idx(S.plan_groups([p for p in partial if p[0] in (2, 5)], None)) == [[2, 5]]


def test_a_group_names_its_members_while_it_runs(tmp_path):
    runs, _ = S.build_runs(TINY_SWEEP, seeds=[0, 1])
    wd = str(tmp_path / "w")
    seen = []

    def group_fn(cfgs, dirs, resume, overwrite):
        for d in dirs:
            seen.append(json.load(open(os.path.join(d, S.SWEEP_FILE))))
        return [{"recovery_scores": [0.5], "rs_last": 0.5} for _ in dirs]
    recs = S.execute(runs, wd, group_fn=group_fn, max_group=2, log=lambda m: None)
    assert [r["status"] for r in recs] == ["ran"] * 4
    assert [s["group"] for s in seen] == [["cyclic/seed=0", "cyclic/seed=1"]] * 2 + \
        [["shuffled/seed=0", "shuffled/seed=1"]] * 2 and all(s["status"] == "running" for s in seen)
    side = json.load(open(os.path.join(wd, "cyclic", "seed=0", S.SWEEP_FILE)))
    assert side["status"] == "ran" and "group" not in side and side["group_size"] == 2


@pytest.mark.slow
def test_a_stopped_group_resumes_in_its_group_bit_for_bit(tmp_path):
    """Ctrl-C while the first of two groups trains; the same command again finishes with the numbers of an
    uninterrupted sweep (the resumed group has its first members, not all of the sweep's unfinished runs)."""
    import signal
    import subprocess
    import sys
    import time

    import numpy as np
    ref = str(tmp_path / "ref")
    cmd = lambda wd: [sys.executable, "-m", "recovery_jax.sweep", "--config", TINY_SWEEP, "--workdir", wd,  # noqa: E731
                      "--max-group", "2", "--config.E=6"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(cmd(ref), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    wd = str(tmp_path / "w")
    proc = subprocess.Popen(cmd(wd), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = os.path.join(wd, "cyclic", "seed=0", "checkpoints")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (os.path.isdir(ckpt) and os.listdir(ckpt)):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=240)
    if proc.returncode == 0:
        pytest.skip("the sweep finished before the stop signal")
    assert proc.returncode == 130 and "Traceback" not in out, out
    side = json.load(open(os.path.join(wd, "cyclic", "seed=0", S.SWEEP_FILE)))
    assert side["status"] == "running" and side["group"] == ["cyclic/seed=0", "cyclic/seed=1"]
    again = subprocess.run(cmd(wd), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "group of 2 runs in one program: cyclic/seed=0, cyclic/seed=1" in again.stdout
    for name in ("cyclic/seed=0", "cyclic/seed=1", "shuffled/seed=0", "shuffled/seed=1"):
        a, b = np.load(os.path.join(ref, name, "losses.npz")), np.load(os.path.join(wd, name, "losses.npz"))
        np.testing.assert_array_equal(a["eval_losses"], b["eval_losses"])
        np.testing.assert_array_equal(a["train_losses"], b["train_losses"])
