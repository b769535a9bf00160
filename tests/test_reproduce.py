"""recovery_jax.reproduce: the committed tables equal the records, a tiny end-to-end row, verdicts, bad input."""

import glob
import json
import os
import shutil

import numpy as np
import pytest

from recovery_jax import cli, metrics, stats
from recovery_jax import reproduce as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "REPRODUCTION.md")
RECORDS = os.path.join(ROOT, "docs", "repro")
TINY = ["T=3", "C=16", "M=2", "E=3", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=64"]


@pytest.fixture
def repo(monkeypatch):
    monkeypatch.chdir(ROOT)  # the registry's config paths are relative to the repository root


def run(argv, capsys):
    rc = cli.guarded(R.main, argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ----------------------------------------------------------------------------- (a) the committed doc


def test_committed_tables_equal_what_tables_only_writes(tmp_path, repo, capsys):
    doc = tmp_path / "REPRODUCTION.md"
    shutil.copyfile(DOC, doc)
    rc, out, err = run(["--tables-only", "--doc", str(doc), "--records", RECORDS], capsys)
    assert rc == 0, err
    assert "unchanged" in out, "docs/REPRODUCTION.md is stale: run python -m recovery_jax.reproduce --tables-only"
    assert doc.read_text(encoding="utf-8") == open(DOC, encoding="utf-8").read()


def test_committed_records_are_portable_and_of_registry_rows():
    paths = sorted(glob.glob(os.path.join(RECORDS, "*.json")))
    assert paths
    for path in paths:
        rec = json.load(open(path))
        assert rec["id"] in R.ROW_BY_ID and os.path.basename(path) == f"{rec['id']}.json"
        assert ROOT not in json.dumps(rec) and "/tmp/" not in json.dumps(rec), f"{path} holds an absolute path"
        assert R.record_complete(rec) and not rec["overrides"], path
    for path in sorted(glob.glob(os.path.join(RECORDS, "pretrain", "*.json"))):
        rec = json.load(open(path))
        name = os.path.basename(path)[:-len(".json")]
        assert rec["id"] == f"pretrain/{name}" and os.path.exists(os.path.join(ROOT, "configs", "pretrain", f"{name}.py"))
        assert ROOT not in json.dumps(rec) and "/tmp/" not in json.dumps(rec), f"{path} holds an absolute path"


def test_every_cpu_config_has_a_row_and_the_groups_exist(repo):
    from recovery_jax import sweep
    configs = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "cpu", "*.py"))}
    configs.discard(os.path.join("configs", "cpu", "base.py"))
    assert configs <= {r.config for r in R.ROWS}, sorted(configs - {r.config for r in R.ROWS})
    for row in R.ROWS:  # the sweep group names the registry compares are the ones the config's sweep writes
        if row.config is None or row.needs or not row.groups:
            continue
        runs, _ = sweep.build_runs(row.config)
        names = {r.point.name for r in runs}
        assert {n for _, n in row.groups} <= names, (row.id, sorted(names))


# ----------------------------------------------------------------------------- (b) one row end to end, tiny


def test_fig1_end_to_end_tiny(tmp_path, repo, capsys):
    doc = tmp_path / "doc.md"
    shutil.copyfile(DOC, doc)
    records, out_dir = tmp_path / "records", tmp_path / "out"
    argv = ["--out", str(out_dir), "--only", "fig1", "--doc", str(doc), "--records", str(records), "--seeds", "0,1"]
    argv += [f"--config.{o}" for o in TINY]
    rc, out, err = run(argv, capsys)
    assert rc == 0, err
    assert "fig1: configs/cpu/fig1.py: 4 run(s)" in out and "total wall time" in out

    rec = json.load(open(records / "fig1.json"))
    assert rec["n_runs"] == rec["n_runs_done"] == 4 and rec["overrides"] == TINY and rec["seeds"] == [0, 1]
    assert str(tmp_path) not in json.dumps(rec) and rec["command"].startswith(
        "python -m recovery_jax.sweep --config configs/cpu/fig1.py --workdir OUT/fig1 --reuse OUT")
    groups = {g["name"]: g for g in rec["groups"]}
    assert list(groups) == ["cyclic", "shuffled"]
    for name, g in groups.items():  # the record's numbers, recomputed from the run directories' losses
        summ = []
        for seed in (0, 1):
            z = np.load(out_dir / "fig1" / name / f"seed={seed}" / "losses.npz")
            summ.append(metrics.summarize(z["eval_losses"], z["train_losses"], z["order"], M=2))
        rs = [s["rs_last"] for s in summ]
        assert g["rs_last"]["values"] == pytest.approx(rs, abs=2e-6)
        assert g["rs_last"]["mean"] == pytest.approx(np.mean(rs), abs=2e-6)
        assert g["rs_last"]["std"] == pytest.approx(np.std(rs), abs=2e-6)
        assert g["online_loss"]["mean"] == pytest.approx(np.mean([s["online_loss"]["mean"] for s in summ]), abs=2e-6)
        assert g["doc1_revisit_drop"]["mean"] == pytest.approx(
            np.mean([s["revisit_doc0"]["last_rel_drop"] for s in summ]), abs=2e-6)
        assert g["rs_per_cycle"]["mean"] == pytest.approx(
            np.mean([s["recovery_scores"] for s in summ], axis=0), abs=2e-6)

    text = doc.read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if "(`fig1`)" in ln and ln.startswith("| Cyclic training"))
    for name, g in groups.items():
        assert f"{name} **{stats.pm(g['rs_last'])}**" in line
    assert "⚠ with `--config.T=3`" in line and "`--seeds 0,1`" in line
    online = next(ln for ln in text.splitlines() if "(`fig1c`)" in ln)  # the row that reads fig1's record
    assert f"cyclic online loss **{stats.pm(groups['cyclic']['online_loss'])}**" in online
    assert "| `fig1` | `python -m recovery_jax.sweep --config configs/cpu/fig1.py --workdir OUT/fig1" in text

    # a second call finds the record complete and its runs in OUT, and runs nothing
    rc, out, err = run(argv, capsys)
    assert rc == 0 and "is complete" in out and "run(s)" not in out
    # a run left unfinished in OUT (an interrupted --rerun) is resumed, though the record is complete
    unfinished = out_dir / "fig1" / "shuffled" / "seed=1"
    (unfinished / "summary.json").unlink()
    rc, out, err = run(argv, capsys)
    assert rc == 0 and "fig1: 1 unfinished run(s)" in out and "is complete" not in out, out
    assert (unfinished / "summary.json").exists()
    assert R.unfinished_runs(str(out_dir / "fig1")) == []
    (out_dir / "fig1" / "cyclic" / "seed=9").mkdir()  # stopped before its config.json: the sweep's note only
    (out_dir / "fig1" / "cyclic" / "seed=9" / "sweep_run.json").write_text('{"status": "running"}')
    assert R.unfinished_runs(str(out_dir / "fig1")) == [str(out_dir / "fig1" / "cyclic" / "seed=9")]
    shutil.rmtree(out_dir / "fig1" / "cyclic" / "seed=9")
    # a fresh OUT (a fresh clone: committed records, no runs) recomputes the row, though its record is complete
    argv[argv.index(str(out_dir))] = str(tmp_path / "fresh")
    rc, out, err = run(argv, capsys)
    assert rc == 0 and "fig1: configs/cpu/fig1.py: 4 run(s)" in out and (tmp_path / "fresh" / "fig1").is_dir()


# ----------------------------------------------------------------------------- (c) verdicts


def grp(mean, std=0.0, **more):
    g = {"n": 3, "rs_last": {"mean": mean, "std": std, "n": 3}, "positive_transfer_last": 0,
         "rs_per_cycle": {"mean": [mean / 2, mean], "std": [std, std], "n": [3, 3]}}
    g.update({k: {"mean": v[0], "std": v[1], "n": 3} for k, v in more.items()})
    return g


def ctx(*means, std=0.0, extra=None):
    return R.Context({f"g{i}": grp(m, std) for i, m in enumerate(means)}, extra or {})


@pytest.mark.parametrize("means,direction,level", [
    ((0.1, 0.2, 0.3, 0.4), "rises", "yes"),
    ((0.07, 0.50, 0.57, 0.53), "rises", "partly"),  # mostly rising (Fig 3b)
    ((0.49, 0.57, 0.50), "falls", "partly"),  # one clear step the claimed way, ends about equal (Fig 5c)
    ((0.53, 0.62, 0.58), "falls", "no"),  # the ends reversed (Fig 5d)
    ((0.4, 0.3, 0.2), "rises", "no"),
    ((0.3, 0.2, 0.1), "falls", "yes"),
])
def test_monotone(means, direction, level):
    assert R.Monotone(direction).judge(ctx(*means, std=0.02)).level == level


def test_monotone_needs_a_step_beyond_the_noise():
    assert R.Monotone("rises").judge(ctx(0.50, 0.51, 0.50, std=0.05)).level == "no"


@pytest.mark.parametrize("a,b,std,level", [(0.57, 0.11, 0.02, "yes"), (0.63, 0.55, 0.05, "not shown"),
                                           (0.30, 0.60, 0.05, "no")])
def test_greater(a, b, std, level):
    v = R.Greater("g0", "g1").judge(ctx(a, b, std=std))
    assert v.level == level and "g0 − g1" in v.basis


def test_greater_lower_and_two_metrics_of_one_group():
    c = R.Context({"cyc": grp(0.5, online_loss=(1.7, 0.03)), "shuf": grp(0.1, online_loss=(2.0, 0.03))}, {})
    assert R.Greater("cyc", "shuf", "online_loss", lower=True).judge(c).level == "yes"
    assert R.Greater("shuf", "cyc", "online_loss", lower=True).judge(c).level == "no"
    v = R.Greater("cyc", "cyc", "rs2", "rs1").judge(c)  # RS of cycle 2 above RS of cycle 1
    assert v.level == "yes" and v.basis.startswith("cyc RS(2) − RS(1)")


def test_above_below_flat_flag():
    assert R.Above(0.2).judge(ctx(0.4, 0.6, std=0.05)).level == "yes"
    assert R.Above(0.2).judge(ctx(0.22, 0.6, std=0.05)).level == "partly"
    assert R.Above(0.2).judge(ctx(0.1, 0.15, std=0.01)).level == "no"
    assert R.Below(0.05).judge(ctx(0.0, std=0.0)).level == "yes"
    assert R.Below(0.05).judge(ctx(0.3, std=0.0)).level == "no"
    assert R.Flat(0.1).judge(ctx(0.5, 0.55, 0.58)).level == "yes"
    assert R.Flat(0.1).judge(ctx(0.5, 0.65)).level == "partly"
    assert R.Flat(0.1).judge(ctx(0.2, 0.6)).level == "no"
    assert R.Flag("div", "diverges").judge(ctx(0.5, extra={"div": 8})).level == "yes"
    assert R.Flag("div", "diverges").judge(ctx(0.5, extra={"div": None})).level == "no"


def test_the_verdict_is_the_weakest_rule_and_a_missing_group_gives_a_dash():
    c = ctx(0.1, 0.2, 0.3, std=0.01)
    assert R.verdict([R.Monotone("rises"), R.Above(0.15)], c).level == "partly"
    v = R.verdict([R.Greater("g0", "nope")], c)
    assert v.level == "—" and "nope" in v.basis


def test_cells_of_a_row():
    row = R.Row("x", "9", "claim", "a / b", "configs/cpu/x.py", groups=(("a", "A"), ("b", "B")),
                bold=("b",), rules=(R.Monotone("rises"),), expect="yes", reason="as the paper")
    rec = {"n_runs": 6, "n_runs_done": 6, "runs_by_status": {"ran": 6}, "overrides": [],
           "groups": [dict(grp(0.2, 0.01), name="A"), dict(grp(0.4, 0.01), name="B")]}
    assert R.measurement(row, rec) == "0.200 ± 0.010 / **0.400 ± 0.010**"
    assert R.holds(row, rec) == "**yes** (computed: RS rises at 1 of 1 steps): as the paper"
    falling = dict(rec, groups=[dict(grp(0.2, 0.01), name="B"), dict(grp(0.4, 0.01), name="A")])
    assert R.measurement(row, falling) == "0.400 ± 0.010 / **0.200 ± 0.010**"  # the row's order, not the record's
    assert "**no**" in R.holds(row, falling) and "⚠ The note was written for **yes**" in R.holds(row, falling)
    assert R.measurement(row, None) == "not run yet" and R.holds(row, None) == "—"
    assert "incomplete" in R.measurement(row, dict(rec, n_runs_done=3))
    pre = R.ROW_BY_ID["fig2a"]
    assert "needs a pretrained model" in R.status_cell(pre, None)


# ----------------------------------------------------------------------------- pretraining and imports


def test_a_pretrained_row_is_skipped_without_the_pretrain_module(tmp_path, repo, capsys, monkeypatch):
    monkeypatch.setattr(R, "pretrain_available", lambda: False)
    doc = tmp_path / "doc.md"
    shutil.copyfile(DOC, doc)
    rc, out, err = run(["--out", str(tmp_path / "out"), "--only", "fig2a,fig16", "--doc", str(doc),
                        "--records", str(tmp_path / "rec")], capsys)
    assert rc == 0, err
    assert "fig2a: needs pretraining: recovery_jax.pretrain not available; skipped" in out
    assert not (tmp_path / "rec" / "fig2a.json").exists()


def test_a_pretrained_row_runs_the_pretraining_once_and_passes_its_path(tmp_path, capsys, monkeypatch):
    for p in ("configs/pretrain/neox_small.py", "configs/cpu/fig2a.py", "configs/cpu/fig16.py"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_text("")
    shutil.copyfile(DOC, tmp_path / "doc.md")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(R, "pretrain_available", lambda: True)
    calls, sweeps = [], []

    class Done:
        returncode = 0

    def fake_pretrain(cmd, **kw):
        calls.append(cmd)
        wd = cmd[cmd.index("--workdir") + 1]
        os.makedirs(wd, exist_ok=True)
        json.dump({"finished": True, "steps": 600, "train_wall_s": 1500.0, "tokens_per_s": 800.0,
                   "revisions": [{"revision": "step0", "heldout_loss": {"mean": 10.5}},
                                 {"revision": "step600", "heldout_loss": {"mean": 6.4}}]}, open(f"{wd}/pretrain.json", "w"))
        return Done()
    monkeypatch.setattr(R.subprocess, "run", fake_pretrain)

    def fake_sweep(row, opts, log, extra_overrides=()):
        sweeps.append((row.id, list(extra_overrides)))
        return {"id": row.id, "n_runs": 1, "n_runs_done": 1, "cpu_s": 0.0, "groups": [], "overrides": []}
    monkeypatch.setattr(R, "run_sweep_row", fake_sweep)
    rc, out, err = run(["--out", "o", "--only", "fig2a,fig16", "--doc", "doc.md"], capsys)
    assert rc == 0, err
    assert len(calls) == 1 and calls[0][1:] == ["-m", "recovery_jax.pretrain", "--config",
                                                 os.path.join("configs", "pretrain", "neox_small.py"), "--workdir",
                                                 os.path.join("o", "pretrain", "neox_small"), "--no-progress"]
    hf = f"model.hf_path={os.path.join('o', 'pretrain', 'neox_small')}"
    assert sweeps == [("fig2a", [hf]), ("fig16", [hf])]
    # what the pretraining cost is a record of its own, and a line of the compute table (counted in the total)
    rec = json.load(open(os.path.join("repro", "pretrain", "neox_small.json")))
    assert rec["id"] == "pretrain/neox_small" and rec["wall_from"] == "this command" and rec["steps"] == 600
    assert rec["heldout_loss"] == {"step0": 10.5, "step600": 6.4} and "OUT/pretrain/neox_small" in rec["command"]
    assert "| `pretrain/neox_small` |" in open("doc.md").read()
    # finished before and recorded: neither run again by the sweep's needs nor re-recorded with a shorter wall
    before = open(os.path.join("repro", "pretrain", "neox_small.json")).read()
    run(["--out", "o", "--only", "fig2a", "--doc", "doc.md", "--rerun"], capsys)
    assert open(os.path.join("repro", "pretrain", "neox_small.json")).read() == before
    # finished before but never recorded: the record takes pretrain.json's own training-loop wall
    os.unlink(os.path.join("repro", "pretrain", "neox_small.json"))
    run(["--out", "o", "--only", "fig2a", "--doc", "doc.md", "--rerun"], capsys)
    rec = json.load(open(os.path.join("repro", "pretrain", "neox_small.json")))
    assert rec["wall_s"] == 1500.0 and rec["cpu_s"] is None and rec["wall_from"].startswith("pretrain.json")


def test_import_summaries_makes_records_and_tables(tmp_path, repo, capsys):
    root = tmp_path / "old"
    (root / "fig3b").mkdir(parents=True)

    def g(name, m):
        st = {"n": 3, "rs_last": {"mean": m, "std": 0.01, "n": 3, "values": [m] * 3},
              "rs_per_cycle": {"mean": [m], "std": [0.01], "n": [3]}, "online_loss": {"mean": 2.0, "std": 0.1, "n": 3},
              "doc1_revisit_drop": {"mean": 0.3, "std": 0.0, "n": 3}, "positive_transfer_last": 0,
              "mean_loss_final": {"mean": 0.1, "std": 0.0, "n": 3}}
        return {"name": f"model.num_layers={name}", "seeds": [0, 1, 2], "stats": st}
    summary = {"config": "configs/cpu/fig3b.py", "seeds": [0, 1, 2], "command": "python -m recovery_jax.sweep ...",
               "n_runs": 12, "n_runs_done": 12, "cpu_s_total": 90.0, "wall_s_total": 120.0,
               "groups": [g(1, 0.1), g(2, 0.2), g(4, 0.3), g(6, 0.4)], "runs": [{"status": "ran"}] * 12}
    (root / "fig3b" / "sweep_summary.json").write_text(json.dumps(summary))
    doc = tmp_path / "doc.md"
    shutil.copyfile(DOC, doc)
    rc, out, err = run(["--import-summaries", str(root), "--only", "fig3b", "--doc", str(doc), "--records",
                        str(tmp_path / "rec")], capsys)
    assert rc == 0, err
    rec = json.load(open(tmp_path / "rec" / "fig3b.json"))
    assert rec["cpu_s"] == 90.0 and rec["runs_by_status"] == {"ran": 12} and len(rec["groups"]) == 4
    text = doc.read_text(encoding="utf-8")
    assert "**0.100 ± 0.010** / 0.200 ± 0.010 / 0.300 ± 0.010 / 0.400 ± 0.010 | **yes**" in text
    assert "⚠ The note was written for **partly**" in text


# ----------------------------------------------------------------------------- (d) bad input


def test_unknown_only_id_is_one_error_line(tmp_path, repo, capsys):
    rc, out, err = run(["--out", str(tmp_path / "o"), "--only", "fig1,fig99"], capsys)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --only: unknown row id(s) fig99")
    assert "valid ids: fig1, fig1c" in lines[0] and "toy" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv,message", [
    (["--out", "FILE"], "--out FILE: exists and is not a directory"),
    ([], "--out is needed"),
    (["--tables-only", "--dry-run"], "exclude each other"),
    (["--tables-only", "--config.T=3"], "only apply when running"),
    (["--out", "o", "--config.Tee=3"], "unknown config key 'Tee'"),
    (["--out", "o", "--seeds", "x"], "--seeds"),
    (["--tables-only", "--doc", "nope.md"], "--doc nope.md: no such file"),
])
def test_bad_arguments_are_one_error_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("x")
    shutil.copyfile(DOC, tmp_path / "doc.md")
    if "--doc" not in argv:
        argv = argv + ["--doc", "doc.md"]
    rc, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_a_doc_without_markers_is_one_error_line(tmp_path, repo, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("# no markers\n")
    rc, out, err = run(["--tables-only", "--doc", str(doc), "--records", RECORDS], capsys)
    assert rc == 2 and err.strip().startswith("error: ") and "<!-- reproduce:results:begin -->" in err
    assert doc.read_text() == "# no markers\n"
