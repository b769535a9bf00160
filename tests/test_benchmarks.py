"""The benchmark machinery end to end on a tiny config: the PyTorch transcription of the authors' loop and
our engine run the same protocol from the same weights and must produce the same loss tensors (a real
parity test of the whole protocol); the report has its fields, with positive numbers. No timing asserts."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks import common, throughput  # noqa: E402
from recovery_jax import config as config_lib  # noqa: E402

TINY = ["T=3", "C=16", "M=2", "E=2", "model.num_layers=1", "model.hidden_size=32", "model.num_heads=2",
        "model.intermediate_size=64", "progress=false"]


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cfg = config_lib.load("configs/default.py", TINY)
    # one torch thread and the scan timed by subtraction (no extra compile) keep this fast on a busy CPU
    return throughput.run_benchmark(cfg, isolate=False, util_reps=2, peak_sizes=(128,), torch_threads=1,
                                    isolated_scan=False,
                                    bundle_dir=str(tmp_path_factory.mktemp("bench")), log=lambda *_: None)


def test_torch_and_jax_loss_tensors_agree(report):
    p = report["parity"]
    assert p["shapes"] == {"eval": [3 * 2 + 1, 3], "train": [3 * 2 * 2]}
    assert p["max_abs_diff_eval"] <= 1e-3, p
    assert p["max_abs_diff_train"] <= 1e-3, p
    assert p["ok"]
    # the comparison is of real work: the losses moved during training
    assert report["losses"]["ours_train_first"] > 0


def test_report_fields(report, tmp_path):
    proto = report["protocol"]
    assert (proto["T"], proto["C"], proto["M"], proto["E"]) == (3, 16, 2, 2)
    assert proto["episodes_timed"] == proto["episodes_total"] == 6
    for side in ("ours", "torch"):
        r = report[side]
        for key in ("wall_s", "episodes_per_s", "tokens_per_s", "train_tokens_per_s", "eval_tokens_per_s"):
            assert _positive(r[key]), (side, key, r[key])
        assert r["train_tokens"] == 6 * 2 * 16 and r["eval_tokens"] == 7 * 3 * 16
        assert _positive(r["memory"]["rss_peak_mb"])
    assert _positive(report["ours"]["compile_s"])
    assert report["torch"]["device"] == "cpu"
    assert _positive(report["speedup"]["ours_vs_torch"])
    u = report["ours"]["utilisation"]
    for key in ("scan_flops_per_s", "eval_flops_per_s", "scan_pct_of_peak", "eval_pct_of_peak"):
        assert _positive(u[key]), (key, u[key])
    assert _positive(u["peaks"]["float32"]["peak_flops_per_s"])
    assert _positive(report["flops"]["total_flops"])
    assert report["model"]["dims"] == {"d": 32, "layers": 1, "heads": 2, "ff": 64, "vocab": report["protocol"]["vocab_size"]}
    bd = report["bounds"]
    assert bd["wall_at_peak_s"] == pytest.approx(report["flops"]["total_flops"] / bd["peak_flops_per_s"])
    assert 0 < bd["ours_pct_of_peak_whole_protocol"] and bd["max_ratio_vs_torch_at_peak"] > 0
    assert any("no implementation can be more than" in line for line in throughput.summary_lines(report))
    out = tmp_path / "report.json"
    common.write_json(str(out), report)  # JSON-serialisable
    assert json.loads(out.read_text())["parity"]["ok"]


def test_speed_bounds_by_hand():
    """1 TFLOP at a 100 GFLOP/s peak takes >= 10 s: against a 40 s reference no implementation beats 4x,
    and 3x needs 75 % of the peak over the whole protocol; ours in 20 s ran at 50 %."""
    r = {"flops": {"total_flops": 1e12}, "torch": {"wall_s": 40.0},
         "ours": {"wall_s": 20.0, "utilisation": {"peak_reference_dtype": "float32",
                                                   "peaks": {"float32": {"peak_flops_per_s": 1e11}}}}}
    bd = throughput.speed_bounds(r, target=3.0)
    assert bd["wall_at_peak_s"] == pytest.approx(10.0)
    assert bd["max_ratio_vs_torch_at_peak"] == pytest.approx(4.0)
    assert bd["pct_of_peak_needed_for_target"] == pytest.approx(75.0)
    assert bd["ours_pct_of_peak_whole_protocol"] == pytest.approx(50.0)
    assert bd["torch_pct_of_peak_whole_protocol"] == pytest.approx(25.0)
    assert throughput.speed_bounds({"ours": {}}) is None


def test_flop_model_counts():
    fm = common.flop_model("gpt_neox", {"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
                                        "intermediate_size": 32, "vocab_size": 10, "rotary_pct": 0.5}, C=4)
    per_block = 3 * 64 + 64 + 2 * 8 * 32
    assert fm["matmul_params"] == 2 * per_block + 8 * 10
    assert fm["forward_flops_per_seq"] == 2 * fm["matmul_params"] * 4 + 2 * 4 * 16 * 8
    assert fm["train_step_flops"] == 3 * fm["forward_flops_per_seq"]
    np.testing.assert_equal(common.protocol_flops(fm, T=3, M=2, episodes=5)["eval_flops"],
                            6 * 3 * fm["forward_flops_per_seq"])


def test_profile_step_on_tiny_config(tmp_path):
    """The per-op profile runs and accounts for the step: matmul shapes timed in both libraries, the profiler
    trace categorised (matmuls present), a step time and its FLOP count."""
    from benchmarks import profile_step

    cfg = config_lib.load("configs/default.py", TINY)
    r = profile_step.profile(cfg, str(tmp_path), top=5, reps=2)
    assert _positive(r["wall_step_s"]) and _positive(r["analytic_step_flops"])
    # forward, grad wrt input, grad wrt weight for each of the 5 weight matmuls and 2 attention products
    assert len(r["matmuls_step"]) == 3 * 7
    assert all(_positive(m["gflops_per_s"]) and _positive(m["torch_gflops_per_s"]) for m in r["matmuls_step"])
    assert _positive(r["step_matmul_floor_s"]) and _positive(r["step_matmul_floor_torch_kernels_s"])
    assert "matmul" in r["scan_by_kind_ms"] and "matmul" in r["eval_by_kind_ms"]
    lines = []
    profile_step.print_report(r, log=lines.append)
    assert any("the same matmuls in PyTorch" in line for line in lines)


def test_torch_device_errors(capsys):
    from benchmarks import torch_ref

    assert torch_ref.check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="'tpu' is not supported; use cpu or cuda"):
        torch_ref.check_device("tpu")
    import torch

    if not torch.cuda.is_available():
        # the CLI refuses before building anything, with one line
        assert throughput.main(["--torch-device", "cuda", "--episodes-only", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "torch.cuda.is_available() is False" in err[0], err


def test_gpu_groups_smoke_on_cpu(tmp_path):
    """The GPU group benchmark runs end to end on CPU with a tiny model (the GPU numbers come from gpu_check.sh)."""
    from benchmarks import gpu_groups

    out = tmp_path / "g.json"
    assert gpu_groups.main(["--preset", "pythia-14m", "--groups", "1,2", "--T", "2", "--C", "8", "--M", "1",
                            "--E", "1", "--episodes", "1", "--out", str(out)]) == 0
    rep = json.load(open(out))
    assert [r["R"] for r in rep["runs"]] == [1, 2]
    assert all(r["episode_s"] > 0 and 0 < r["mfu"] for r in rep["runs"])
    assert rep["runs"][1]["tokens_per_s"] > 0


def test_sweep_throughput_ratios_and_lines_from_a_synthetic_report(capsys):
    from benchmarks import sweep_throughput as st

    def way(wall, compile_s=None, train=None):
        x = {"wall_s": wall, "n_runs": 6, "runs_per_hour": 3600 * 6 / wall, "peak_rss_mb": 100.0}
        if compile_s is not None:
            x.update(compile_s=compile_s, train_s=train, group_sizes=[6])
        return x
    r = {"a_one_per_run": way(300, 72, 200), "a_warm_cache": way(240, 12, 200), "b_grouped": way(200, 12, 190),
         "c_torch": dict(way(500), extrapolated=True, timed_runs=2)}
    a, b = r["a_one_per_run"], r["b_grouped"]
    r["ratios"] = {"b_vs_a": a["wall_s"] / b["wall_s"], "b_vs_torch": 500 / 200}
    lines = st.summary_lines(r)
    assert any("(b)  grouped: 200.0s wall for 6 runs" in ln and "groups of [6]" in ln for ln in lines)
    assert any("timed 2 of 6 runs, extrapolated" in ln for ln in lines)
    assert "  b_vs_a: 1.50" in lines and "  b_vs_torch: 2.50" in lines
    assert st.main(["--config", "/nonexistent.py"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: config file '/nonexistent.py' does not exist")


def test_sweep_throughput_ratios_read_compute_two_ways():
    from benchmarks import sweep_throughput as st

    r = {"a_one_per_run": {"wall_s": 300.0, "train_s": 200.0, "work_s": 220.0, "compile_s": 72.0},
         "a_warm_cache": {"wall_s": 240.0}, "b_grouped": {"wall_s": 216.0, "compile_s": 12.0},
         "c_torch": {"wall_s": 432.0}}
    got = st.ratios(r)
    assert got["b_vs_a"] == 300 / 216 and got["b_vs_a_warm"] == 240 / 216 and got["b_vs_torch"] == 2.0
    assert got["b_wall_over_compute_plus_group_compiles"] == 216 / (200 + 12)
    assert got["b_wall_over_work_plus_group_compiles"] == 216 / (220 + 12)
    assert "b_runner_over_work_plus_group_compiles" not in got  # (b)'s work was not measured
    r["b_grouped"]["work_s"] = 196.0
    assert st.ratios(r)["b_runner_over_work_plus_group_compiles"] == (196 + 12) / (220 + 12)
    del r["c_torch"], r["a_one_per_run"]["work_s"]
    assert "b_vs_torch" not in st.ratios(r) and "b_wall_over_work_plus_group_compiles" not in st.ratios(r)
    assert st._thread_counts("1,2") == [1, 2] and st._thread_counts("2") == [2]
    for bad in ("0", "a", "", "1,-1"):
        with pytest.raises(Exception, match="positive thread counts"):
            st._thread_counts(bad)


def test_pretrain_step_benchmark_compares_the_same_loss():
    """benchmarks.pretrain_step times the pretraining step (chunked loss) against the full-logits step on a tiny
    model: both give the same first-step loss, and the report has its timings."""
    from benchmarks import pretrain_step

    tiny = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
            "data.sources=news", "data.seq_len=16", "train.batch=2"]
    out = pretrain_step.run("configs/pretrain/neox_small.py", 1, tiny)
    assert "full logits / chunked" in pretrain_step.summary_lines(out)[-1]
    assert abs(out["loss"]["chunked"] - out["loss"]["full logits"]) < 1e-5
    assert out["loss"]["chunked"] > 1.0 and out["trained_vocab"] > 1000
    assert all(_positive(v["best"]) for v in out["step_s"].values())
    assert _positive(out["ratio_full_over_chunked"]["median"])


@pytest.mark.parametrize("argv, needle", [(["--config", "nope.py"], "nope.py"), (["--reps", "0"], "--reps"),
                                          (["--config.model.nope=3"], "model.nope")])
def test_pretrain_step_bad_input_is_one_error_line(argv, needle, capsys):
    from benchmarks import pretrain_step

    assert pretrain_step.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
