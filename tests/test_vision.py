"""Image runs end to end (docs/PROTOCOL.md §3 Fig 7): a tiny Image GPT and tiny classifiers through runner.run, a
group of two seeds equal to the runs alone, report on an image run, the task arrays, and every bad image input as
one `error:` line with exit 2 through `python -m recovery_jax.train`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from recovery_jax import cli, runner, train, vision
from recovery_jax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_vision_config.py")
TINY_TEXT = os.path.join(ROOT, "tests", "tiny_config.py")
# scikit-learn's digits (8x8 gray, 10 classes) as T fixed labelled batches of 4 into a tiny VGG / ViT
CLASSIFY = {"model.arch": "vgg", "model.preset": "vgg-tiny", "data.source": "digits", "data.gray_to_rgb": True,
            "data.batch_size": 4, "data.image_size": 8, "model.dropout": "from_hf", "model.hidden_size": 0,
            "model.num_layers": 0}
QUIET = dict(log=lambda *a: None)


def tiny(**over):
    return config_lib.load(TINY, [f"{k}={v}" for k, v in over.items()])


def classifier(**over):
    return tiny(**{**CLASSIFY, **over})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    out = {"igpt": runner.run(tiny(), str(root / "igpt"), **QUIET),
           "vgg": runner.run(classifier(), str(root / "vgg"), **QUIET),
           "vit": runner.run(classifier(**{"model.arch": "vit", "model.preset": "vit-tiny"}), str(root / "vit"),
                             **QUIET)}
    return root, out


@pytest.mark.parametrize("name", ["igpt", "vgg", "vit"])
def test_tiny_image_runs_write_a_complete_run_directory(runs, name):
    root, out = runs
    s, d = out[name], root / name
    for f in ("config.json", "documents.json", "model.json", "losses.npz", "summary.json"):
        assert (d / f).is_file(), f
    L = np.load(d / "losses.npz")["eval_losses"]
    assert L.shape == (3 * 4 + 1, 4) and np.isfinite(L).all()  # (E·T + 1, T), as for text
    assert len(s["recovery_scores"]) == 2
    docs = json.load(open(d / "documents.json"))
    assert docs["kind"] == "images" and len(docs["ids"]) == 4
    assert json.load(open(d / "model.json"))["arch"] == {"igpt": "imagegpt", "vgg": "vgg", "vit": "vit"}[name]
    assert not (d / "checkpoints").exists() or not os.listdir(d / "checkpoints")  # a finished run drops them


def test_image_gpt_tasks_are_colour_tokens_with_labels_equal_to_inputs():
    t = vision.prepare(tiny())
    assert t.task == "lm" and t.x_T.shape == (4, 16) and t.x_T.dtype == np.int32 and t.y_T.all()
    assert t.clusters.shape == (16, 3) and 0 <= t.x_T.min() and t.x_T.max() < 16 and t.vocab_size == 17
    assert t.clusters_from.startswith("k-means")
    # the same seed gives the same images and tokens; another seed other images
    again, other = vision.prepare(tiny()), vision.prepare(tiny(seed=1))
    np.testing.assert_array_equal(again.x_T, t.x_T)
    assert other.images.ids != t.images.ids


def test_classifier_tasks_are_fixed_labelled_batches():
    t = vision.prepare(classifier())
    assert t.task == "classify" and t.x_T.shape == (4, 4, 8, 8, 3) and t.y_T.shape == (4, 4)
    assert t.vocab_size == 10 and t.x_T.dtype == np.float32
    assert [len(b) for b in t.ids] == [4] * 4
    assert t.images.ids[:4] == t.ids[0]  # batch t is images t·B .. t·B + B - 1 of the seeded selection


def test_classification_loss_is_the_batch_mean_cross_entropy():
    """Engine evaluation of one task = torch's CrossEntropyLoss (mean) on that batch's logits."""
    import jax
    import jax.numpy as jnp

    from recovery_jax.models import vgg

    cfg = classifier()
    t = vision.prepare(cfg)
    mcfg, params = vision.build_params(cfg, t, jax.random.PRNGKey(0))
    eng = runner.make_engine(cfg, mcfg, 10, params, 0)
    got_T = np.asarray(eng.evaluate(params, jnp.asarray(t.x_T), jnp.asarray(t.y_T)))
    model = vgg.VGG(mcfg)
    for i in range(4):
        logits = model.apply({"params": params}, jnp.asarray(t.x_T[i]))
        want = float(vgg.classification_loss(logits, jnp.asarray(t.y_T[i])))
        assert abs(got_T[i] - want) < 1e-5


def test_image_gpt_loss_is_hf_loss_with_labels_equal_to_input_ids():
    """Engine evaluation of one image = ImageGPTForCausalImageModeling's loss with labels = input_ids (no start
    token: the mean over the C-1 next-pixel predictions), the authors' training loss."""
    import jax
    import jax.numpy as jnp

    from recovery_jax.models import imagegpt

    cfg = tiny()
    t = vision.prepare(cfg)
    mcfg, params = vision.build_params(cfg, t, jax.random.PRNGKey(0))
    eng = runner.make_engine(cfg, mcfg, 10, params, 0)
    got_T = np.asarray(eng.evaluate(params, jnp.asarray(t.x_T), jnp.asarray(t.y_T)))
    model = imagegpt.ImageGPT(mcfg)
    for i in range(4):
        ids = jnp.asarray(t.x_T[i:i + 1])
        want = float(imagegpt.lm_loss(model.apply({"params": params}, ids), ids))
        assert abs(got_T[i] - want) < 1e-5


def test_group_of_two_seeds_equals_the_runs_alone(tmp_path):
    for name, make in (("igpt", tiny), ("vgg", classifier)):
        cfgs = [make(seed=0), make(seed=1)]
        alone = [runner.run(c, str(tmp_path / f"{name}_alone{i}"), **QUIET) for i, c in enumerate(cfgs)]
        grouped = runner.run_group(cfgs, [str(tmp_path / f"{name}_group{i}") for i in range(2)], **QUIET)
        for i, c in enumerate(cfgs):
            a = np.load(tmp_path / f"{name}_alone{i}" / "losses.npz")
            g = np.load(tmp_path / f"{name}_group{i}" / "losses.npz")
            np.testing.assert_allclose(g["eval_losses"][:2], a["eval_losses"][:2], atol=1e-5, rtol=0)
            np.testing.assert_allclose(g["train_losses"][:c.M], a["train_losses"][:c.M], atol=1e-5, rtol=0)
            np.testing.assert_allclose(g["eval_losses"], a["eval_losses"], atol=1e-3, rtol=0)
            assert grouped[i]["group_size"] == 2 and alone[i]["group_size"] == 1


def test_resume_of_an_image_run_is_bit_for_bit(tmp_path, capsys):
    """A stop signal in episode 5 (checkpoint every episode), then --resume: the losses of the run in one go."""
    import signal

    from . import signal_driver

    whole = tmp_path / "whole"
    assert cli.guarded(train.main, ["--config", TINY, "--workdir", str(whole)]) == 0
    argv = ["--config", TINY, "--workdir", str(tmp_path / "split")]
    with signal_driver.patches("episode:5", signal.SIGTERM):
        assert cli.guarded(train.main, argv) == 143
    assert cli.guarded(train.main, argv + ["--resume"]) == 0
    a, b = np.load(whole / "losses.npz"), np.load(tmp_path / "split" / "losses.npz")
    np.testing.assert_array_equal(a["eval_losses"], b["eval_losses"])
    np.testing.assert_array_equal(a["train_losses"], b["train_losses"])
    assert json.load(open(tmp_path / "split" / "summary.json"))["resumed_from_episode"] == 5
    capsys.readouterr()


def test_report_on_an_image_run(runs, tmp_path):
    root, _ = runs
    out = tmp_path / "report"
    p = subprocess.run([sys.executable, "-m", "recovery_jax.report", str(root / "vgg"), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 0, p.stderr
    assert any(f.endswith(".png") for f in os.listdir(out))
    assert any(f.endswith(".md") for f in os.listdir(out))


# ----------------------------------------------------------------------------- bad input: one line, exit 2


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    from PIL import Image

    base = tmp_path_factory.mktemp("bad")
    one = base / "oneclass" / "cats"
    one.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(one / f"{i}.png")
    few = base / "few"
    few.mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(few / f"{i}.png")
    np.save(base / "clusters_K4.npy", np.zeros((16, 4), np.float32))
    return base


def _cli(capsys, config, args):
    code = cli.guarded(train.main, ["--config", config, "--no-progress", *args])
    return code, capsys.readouterr().err


def _cls(**over):
    return [f"--config.{k}={v}" for k, v in {**CLASSIFY, **over}.items()]


BAD = [
    ("unknown-image-dataset", TINY, ["--config.data.source=mnist"], "data.source='mnist' is not valid"),
    ("smaller-than-the-model", TINY, _cls(**{"data.image_size": 16}), "smaller than the model's resolution 16"),
    ("grayscale-into-rgb", TINY, _cls(**{"data.gray_to_rgb": False}), "grayscale (1 channel) but the model takes RGB"),
    ("fewer-than-T-batch", TINY, _cls(**{"data.batch_size": 500}), "need n=2000 images but image source 'digits'"),
    ("single-class-folder", TINY, _cls(**{"data.source": "imagefolder", "data.path": "{base}/oneclass"}),
     "has a single class folder 'cats'"),
    ("clusters-wrong-shape", TINY, ["--config.data.clusters={base}/clusters_K4.npy"], "has shape (16, 4)"),
    ("text-config-image-model", TINY_TEXT, ["--config.model.arch=vit", "--config.model.preset=vit-tiny"],
     "data.source='news' is a text corpus but model.arch='vit' is an image model"),
    ("image-source-text-model", TINY, ["--config.model.arch=gpt_neox", "--config.model.preset=pythia-70m"],
     "data.source='skimage' is an image source but model.arch='gpt_neox' is a language model"),
    ("unlabelled-source-classifier", TINY, _cls(**{"data.source": "skimage"}), "has no labels"),
    ("C-not-square", TINY, ["--config.C=20"], "C=20 is not a square"),
    ("folder-too-few", TINY, ["--config.data.source=folder", "--config.data.path={base}/few"],
     "need n=4 images but image source 'folder' has only 2"),
    ("vgg-needs-a-size", TINY, _cls(**{"data.image_size": 0}), "set data.image_size"),
    ("masking-on-images", TINY, ["--config.variant.mask_prob=0.1"], "variant.mask_prob is for text runs"),
]


@pytest.mark.parametrize("name,config,args,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_image_input_is_one_clear_line(name, config, args, fragment, capsys, tmp_path, bad_files):
    args = [a.format(base=bad_files) for a in args] + ["--workdir", str(tmp_path / "w")]
    code, err = _cli(capsys, config, args)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err


def test_bad_image_input_through_the_real_entry_point(tmp_path):
    p = subprocess.run([sys.executable, "-m", "recovery_jax.train", "--config", TINY, "--workdir", str(tmp_path),
                        *_cls(**{"data.gray_to_rgb": False})], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: ") and "grayscale" in p.stderr and "Traceback" not in p.stderr


# ----------------------------------------------------------------------------- pretrained checkpoints (local)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny exported checkpoints of the three ports, as the paper configs load them from the hub: an Image GPT
    directory with its preprocessor_config.json (16 colour clusters), a ViT directory, a VGG .safetensors file."""
    import jax

    from recovery_jax import models
    from recovery_jax.models import imagegpt, vgg, vit

    base = tmp_path_factory.mktemp("ckpt")
    m = config_lib.base_config().model
    m.arch, m.preset = "imagegpt", "imagegpt-tiny"
    g = models.model_config(m, None)
    imagegpt.export(imagegpt.init_params(g, jax.random.PRNGKey(0)), g, base / "igpt")
    clusters = np.random.default_rng(0).uniform(-1, 1, (16, 3)).round(4)
    (base / "igpt" / "preprocessor_config.json").write_text(json.dumps({"clusters": clusters.tolist()}))
    m.arch, m.preset = "vit", "vit-tiny"
    v = models.model_config(m, None)
    vit.export(vit.init_params(v, jax.random.PRNGKey(1)), v, base / "vit")
    m.arch, m.preset = "vgg", "vgg-tiny"
    c = models.model_config(m, 5)  # 5 classes: fewer than the digits' 10
    vgg.export(vgg.init_params(c, jax.random.PRNGKey(2)), c, base / "vgg5.safetensors")
    return base, clusters


def test_pretrained_image_gpt_uses_the_checkpoints_clusters(checkpoints, tmp_path):
    base, clusters = checkpoints
    cfg = tiny(**{"model.init": "pretrained", "model.hf_path": str(base / "igpt"), "model.hidden_size": 0,
                  "model.num_layers": 0})
    t = vision.prepare(cfg)
    np.testing.assert_allclose(t.clusters, clusters, atol=1e-6)
    assert "preprocessor_config.json" in t.clusters_from and t.pretrained[0].n_colors == 16
    s = runner.run(cfg, str(tmp_path / "run"), **QUIET)
    assert s["n_params"] == json.load(open(tmp_path / "run" / "model.json"))["n_params"]


def test_pretrained_classifiers_load_and_check_their_classes(checkpoints, capsys, tmp_path):
    base, _ = checkpoints
    cfg = classifier(**{"model.arch": "vit", "model.preset": "vit-tiny", "model.init": "pretrained",
                        "model.hf_path": str(base / "vit")})
    t = vision.prepare(cfg)
    assert t.pretrained[0].num_labels == 10 and t.x_T.shape == (4, 4, 8, 8, 3)
    args = _cls(**{"model.init": "pretrained", "model.hf_path": str(base / "vgg5.safetensors")})
    code, err = _cli(capsys, TINY, args + ["--workdir", str(tmp_path / "w")])
    assert code == 2 and err.strip().startswith("error: ") and "has 5 classes" in err, err
