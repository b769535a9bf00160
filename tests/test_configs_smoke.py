"""Every experiment config: loads, validates (every sweep point), points to real presets/tokenizers;
every configs/cpu file completes a tiny run through runner.run.

The tiny runs share their cost: after the tiny overrides many cpu files reduce to the same effective
config (e.g. the width, depth, M, C and T sweeps all become the tiny base run), and each distinct
effective config runs once, on behalf of all the files that reduce to it.
"""

import functools
import glob
import json
import os

import pytest

from recovery_jax import config as C
from recovery_jax import models
from recovery_jax import sweep as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = sorted(glob.glob(os.path.join(ROOT, "configs", "paper", "*.py")))
CPU = sorted(glob.glob(os.path.join(ROOT, "configs", "cpu", "*.py")))


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


@functools.lru_cache(maxsize=None)
def runs_of(path: str):
    """S.build_runs(path), once per file for the whole module (tests only read the configs)."""
    return S.build_runs(path)


def one_per_point(runs):
    return list({r.point.name: r for r in runs}.values())


@functools.lru_cache(maxsize=None)
def tokenizer(name: str):
    from recovery_jax import data
    return data.get_tokenizer(name)


def test_there_are_paper_and_cpu_configs():
    wanted = {"fig1", "table1", "fig2a", "fig2b", "fig3a", "fig3b", "fig4a", "fig4b", "fig5a", "fig5b", "fig5c",
              "fig5d", "fig6", "fig8", "fig9", "fig12", "fig13", "fig14", "fig15", "fig16", "fig17", "fig18",
              "fig19a", "fig19b", "fig20", "fig21", "fig22", "fig23"}
    assert wanted <= {stem(p) for p in PAPER}
    assert wanted <= {stem(p) for p in CPU}  # Fig 16: the revisions of the offline pretraining
    assert {"fig5d_pretrained", "fig6b"} <= {stem(p) for p in CPU}
    assert {"fig7a", "fig7b_vit", "fig7b_vgg"} <= {stem(p) for p in PAPER}
    assert {"fig7a", "fig7b"} <= {stem(p) for p in CPU}


# ----------------------------------------------------------------------------- every file, every point


@pytest.mark.parametrize("path", PAPER + CPU, ids=rel)
def test_every_sweep_point_validates(path):
    runs, spec = runs_of(path)
    assert runs, "a config gives at least one run"
    doc = open(path).read().split('"""')[1]
    assert f"--config {rel(path)}" in doc, "the docstring gives the command for this very file"
    for r in one_per_point(runs):
        if r.cfg.model.init == "pretrained":
            continue
        # the from-scratch shape is a valid model (heads divide the width, even rotary dims, ...)
        models.model_config(r.cfg.model, 1000)


# ----------------------------------------------------------------------------- paper configs (no network here)


@pytest.mark.parametrize("path", PAPER, ids=rel)
def test_paper_configs_point_to_real_presets_and_tokenizers(path):
    runs, _ = runs_of(path)
    for r in one_per_point(runs):
        c = r.cfg
        arch, _ = models.preset_config(c.model.preset)
        assert arch == c.model.arch, f"{r.name}: preset {c.model.preset} is {arch}, config says {c.model.arch}"
        if c.data.source in C.IMAGE_SOURCES:  # Fig 7: a pretrained vision model from the hub, no tokenizer
            assert c.model.init == "pretrained" and c.model.revision == "main" and c.model.hf_path.count("/") == 1
            assert c.model.hf_path.split("/")[-1].split(".")[0] == c.model.preset, (r.name, c.model.hf_path)
            assert c.data.source in ("cifar100", "imagefolder") and c.model.dtype == "float32"
            continue
        if c.model.init == "pretrained":
            # the hub id names the same model as the preset (pythia-410m <-> EleutherAI/pythia-410m)
            assert c.model.hf_path.split("/")[-1] == c.model.preset, (r.name, c.model.hf_path, c.model.preset)
            assert c.model.revision in ("main", "step0") or c.model.revision.startswith("step")
        # the model's own tokenizer, which resolves offline (the GPT-NeoX-20B / GPT-2 BPE)
        tok = tokenizer(c.data.tokenizer)
        want = 50277 if arch == "gpt_neox" else 50257
        assert tok.vocab_size == want
        if c.model.init == "pretrained" and arch == "gpt_neox":
            assert c.data.tokenizer == c.model.hf_path
        assert c.data.source in ("cnn_dailymail", "wiki"), c.data.source
        assert not c.data.restrict_vocab and c.model.dtype == "float32"


PAPER_FACTS = {  # (file, key) -> value for every run of the file (docs/PROTOCOL.md §1.2 and §3)
    "base": {"T": 25, "C": 256, "M": 10, "E": 5, "optim.name": "sgd", "optim.lr": 1e-3, "model.preset": "pythia-1b",
             "data.source": "cnn_dailymail", "model.init": "pretrained", "model.revision": "main"},
    "fig1": {"T": 100, "C": 256},
    "table1": {"T": 100, "C": 512, "M": 10, "E": 5},
    "fig2b": {"model.revision": "step0"},
    "fig3a": {"model.intermediate_size": 8192, "model.num_layers": 0, "model.init": "pythia"},
    "fig3b": {"model.intermediate_size": 8192, "model.hidden_size": 0, "model.init": "pythia"},
    "fig4b": {"data.block": 512, "C": 256, "variant.window_start": 128},
    "fig9": {"probes.names": "embed_out", "probes.max_episodes": 75},
    "fig12": {"T": 25, "order.kind": "partial"},
    "fig13": {"M": 1},
    "fig14": {"model.hidden_size": 0, "model.num_layers": 0, "model.preset": "pythia-1b"},
    "fig17": {"E": 10, "optim.schedule": "cosine", "optim.min_lr": 0.0},
    "fig18": {"T": 20, "order.kind": "filler", "order.filler_min": 20, "order.filler_max": 100},
    "fig19b": {"C": 1024},
    "fig20": {"model.arch": "gpt2", "model.preset": "gpt2-large"},
    "fig22": {"E": 4, "model.preset": "pythia-410m"},
    "fig8": {"model.preset": "pythia-410m", "T": 25},
    "fig7a": {"T": 25, "C": 1024, "M": 10, "E": 5, "optim.name": "adam", "optim.lr": 1e-3, "data.source": "cifar100",
              "model.preset": "imagegpt-small", "model.dropout": "off", "data.batch_size": 1},
    "fig7b_vgg": {"T": 25, "M": 10, "E": 5, "data.batch_size": 32, "data.resize": 256, "data.image_size": 224,
                  "optim.name": "adam_reset", "optim.lr": 1e-4, "model.dropout": "from_hf", "model.preset": "vgg19"},
    "fig7b_vit": {"T": 25, "M": 10, "E": 5, "data.batch_size": 32, "data.resize": 256, "data.image_size": 224,
                  "optim.name": "adam_reset", "optim.lr": 1e-4, "model.preset": "vit-base-patch16-224"},
}
PAPER_GRIDS = {  # file -> {key: sorted values over the sweep}
    "fig1": {"order.kind": ["cyclic", "shuffled"]},
    "table1": {"model.preset": ["pythia-1.4b", "pythia-1b", "pythia-2.8b", "pythia-410m"],
               "order.kind": ["cyclic", "shuffled"]},
    "fig2a": {"model.preset": ["pythia-1.4b", "pythia-160m", "pythia-1b", "pythia-2.8b", "pythia-410m"]},
    "fig4a": {"variant.mask_prob": [0.0, 0.1, 0.2, 0.3]},
    "fig5a": {"T": [10, 25, 50, 100, 200]},
    "fig5b": {"M": [1, 5, 10, 20]},
    "fig5c": {"C": [128, 256, 512, 1024]},
    "fig5d": {"optim.freeze_first": [0, 4, 6, 8, 10, 12]},
    "fig6": {"model.revision": ["main", "step0"], "optim.name": ["adam_reset", "sgd"]},
    "fig12": {"order.shuffle_n": [8, 16, 24]},
    "fig14": {"model.num_heads": [2, 4, 8, 16]},
    "fig15": {"model.init": ["normal", "pythia"]},
    "fig16": {"model.revision": ["main", "step12000", "step24000", "step48000", "step6000", "step96000"]},
    "fig19b": {"M": [10, 20, 40]},
    "fig23": {"T": [50, 100, 200]},
    "fig7a": {"order.kind": ["cyclic", "shuffled"], "seed": [0, 1, 2]},
    "fig7b_vgg": {"order.kind": ["cyclic", "shuffled"], "seed": [0, 1, 2]},
    "fig7b_vit": {"order.kind": ["cyclic", "shuffled"], "seed": [0, 1, 2]},
}


@pytest.mark.parametrize("name", sorted(set(PAPER_FACTS) | set(PAPER_GRIDS)))
def test_paper_hyperparameters(name):
    runs, _ = runs_of(os.path.join(ROOT, "configs", "paper", f"{name}.py"))
    flats = [C.flatten(r.cfg) for r in runs]
    for key, value in PAPER_FACTS.get(name, {}).items():
        assert {f[key] for f in flats} == {value}, (name, key)
    for key, values in PAPER_GRIDS.get(name, {}).items():
        assert sorted({f[key] for f in flats}) == values, (name, key)
    if name == "fig1":
        assert len(runs) == 40  # 20 seeds x cyclic/shuffled
    if name == "table1":
        assert len({r.seed for r in runs}) == 10


def test_fig19a_pairs_m_with_inverse_lr():
    runs, _ = runs_of(os.path.join(ROOT, "configs", "paper", "fig19a.py"))
    pairs = sorted({(r.cfg.M, r.cfg.optim.lr) for r in runs})
    assert pairs == [(1, 1e-2), (5, 2e-3), (10, 1e-3), (20, 5e-4)]


# ----------------------------------------------------------------------------- cpu configs: tiny runs

TINY = {"seed": 0, "T": 3, "C": 16, "M": 2, "E": 2, "model.hidden_size": 32, "model.num_layers": 1, "model.num_heads": 2,
        "model.intermediate_size": 64}
EXTRA = {  # what a file's representative point needs on top of TINY
    "fig4b": {"data.block": 32, "data.min_tokens": 24, "variant.window_start": 8, "variant.window": 8},
    "fig5d": {"model.num_layers": 2, "optim.freeze_first": 1},
    "fig5d_pretrained": {"optim.freeze_first": 1},  # of the 2 blocks of the tiny checkpoint below
    "fig12": {"order.shuffle_n": 3},
    "fig18": {"order.filler_min": 2, "order.filler_max": 3},
    "fig8": {"probes.epoch": 2},
    "fig22": {"probes.epoch": 2},
    "fig23": {"probes.epoch": 2},
    "fig9": {"probes.max_episodes": 4, "probes.epoch": 2},
    # the last point is the tiny VGG (its only shape key is the classifier width); 3 batches of 4 digits
    "fig7b": {"model.num_layers": 0, "model.num_heads": 0, "model.intermediate_size": 0, "data.batch_size": 4},
}
# Distinct tiny runs left out by `pytest -m "not slow"` (each costs a compile of ~4 s on 2 cores); the unmarked
# ones cover the shared base run (10 files), shuffled/partial/filler orders, masking, windows, frozen blocks,
# GPT-2 and the activation/weight probes.
SLOW = {"fig6", "fig8", "fig9", "fig13", "fig15", "fig17", "fig19a", "fig21", "fig23"}


def tiny_config(path: str):
    """The file's last sweep point (first seed) with the tiny overrides."""
    runs, _ = runs_of(path)
    cfg = runs[-1].cfg
    over = dict(TINY, **EXTRA.get(stem(path), {}))
    cfg = C.apply_overrides(cfg, [f"{k}={v}" for k, v in over.items()])
    return C.validate(cfg)


def _groups():
    groups: dict[str, list[str]] = {}
    cfgs = {}
    for path in CPU:
        cfg = tiny_config(path)
        key = json.dumps(C.to_dict(cfg), sort_keys=True)
        groups.setdefault(key, []).append(stem(path))
        cfgs[key] = cfg
    params = []
    for key, names in groups.items():
        marks = [pytest.mark.slow] if all(n in SLOW for n in names) else []
        params.append(pytest.param(key, names, marks=marks, id="+".join(names)))
    return params


GROUPS = _groups()


def test_every_cpu_file_has_a_tiny_run():
    covered = {n for p in GROUPS for n in p.values[1]}
    assert covered == {stem(p) for p in CPU}


def tiny_checkpoint(root, revision: str, arch: str = "gpt_neox") -> str:
    """A stand-in for the offline pretraining's output (configs/pretrain/): a 2 x 32 model of the config's
    architecture and its tokenizer's vocabulary (GPT-NeoX 50277, GPT-2 50257), at the top of `root` (like the
    final revision) and as `root/revision`."""
    import jax

    preset, vocab = {"gpt_neox": ("pythia-70m", 50277), "gpt2": ("gpt2", 50257)}[arch]
    mcfg = models.model_config({"arch": arch, "preset": preset, "hidden_size": 32, "num_layers": 2,
                                "num_heads": 2, "intermediate_size": 64}, vocab)
    params = models.init_params(mcfg, jax.random.PRNGKey(0), scheme="gpt2" if arch == "gpt2" else "pythia")
    for d in {str(root), os.path.join(str(root), revision or "main")}:
        models.export_hf(arch, models.to_hf_config(mcfg), params, d)
    return str(root)


@pytest.mark.parametrize("key,names", GROUPS)
def test_cpu_config_tiny_run(key, names, tmp_path):
    from recovery_jax import runner
    cfg = C.from_dict(json.loads(key))
    cfg.progress = False
    if cfg.model.init == "pretrained":  # the configs name runs/pretrain/...: a tiny checkpoint stands in
        cfg.model.hf_path = tiny_checkpoint(tmp_path / "pretrained", cfg.model.revision, cfg.model.arch)
    summary = runner.run(cfg, str(tmp_path / "run"), log=lambda *a: None)
    assert os.path.exists(tmp_path / "run" / "summary.json")
    assert os.path.exists(tmp_path / "run" / "losses.npz")
    assert summary["K"] >= cfg.T * cfg.E and summary["M"] == cfg.M
    assert summary["mean_loss_final"] is not None
    if cfg.order.kind != "filler":
        assert len(summary["recovery_scores"]) == cfg.E - 1
    if cfg.probes.names:
        assert os.path.exists(tmp_path / "run" / "probes.npz")
