"""The image side of a run (docs/PROTOCOL.md §3 Fig 7): images → the T tasks, and the vision model.

A run whose model.arch is an image model (models.registry: `Architecture.data == "images"`) gets its tasks here
instead of from the text corpora; everything after that (engine, episode loop, loss record, metrics, report,
sweep, resume, the run axis) is the language-model code unchanged. Two kinds of task:

* Image GPT ("lm" task, Fig 7a): one image per task, quantised to colour-cluster ids in raster order. The task
  arrays are tokens_TC (C = side² tokens) and an all-ones mask_TC; the loss is the causal next-token loss with
  labels = input_ids and no start token prepended (the authors' train_interleave_igpt.py; pixel 0 is never
  predicted, the mean is over the C-1 next-pixel predictions). Colour clusters: data.clusters (an Image GPT
  preprocessor_config.json, a folder holding one, or a .npy), else the pretrained checkpoint's own
  preprocessor_config.json, else (from scratch) k-means of the T images' pixels with the model's colour count.
* classifiers ("classify" task, Fig 7b): T fixed batches of data.batch_size labelled images; the task arrays are
  pixels_TBHWC (resize the shorter side to data.resize, centre crop data.image_size, normalise) and labels_TB.

Selection: the first T·B images of default_rng(seed).permutation(N) of the source (data.first_t: the first T·B),
batched in that order, like the text documents. The same arrays are trained on and evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import numpy as np

from recovery_jax import config as config_lib
from recovery_jax import models
from recovery_jax.data import images as images_lib
from recovery_jax.engine import CPU_EVAL_TOKENS, auto_eval_batch, eval_doc_bytes
from recovery_jax.models import registry
from recovery_jax.rundir import RunError

# Evaluation chunks of classification tasks: about this many images per chunk (CPU: cache-sized; accelerators:
# 256 images of VGG-19 at 224 px are ~15 GB of activations at most).
CPU_EVAL_IMAGES = 64
DEVICE_EVAL_IMAGES = 256
NORMALIZE = {"imagenet": (images_lib.IMAGENET_MEAN, images_lib.IMAGENET_STD),
             "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}  # [-1, 1]: the google ViT checkpoints' processor


def is_image_run(cfg) -> bool:
    """Whether the run's model is an image model (its tasks come from this module)."""
    return registry.get(cfg.model.arch).data == "images"


@dataclasses.dataclass
class ImageTasks:
    """The T tasks of an image run: x_T / y_T (tokens_TC + mask_TC, or pixels_TBHWC + labels_TB), the images
    they came from (in task order), the output size the data needs (colours + 1, or classes), the colour clusters
    of Image GPT runs, and a pretrained model loaded on the way (its config says what the data must look like)."""

    task: str
    x_T: np.ndarray
    y_T: np.ndarray
    images: images_lib.ImageSet
    vocab_size: int
    image_size: int
    batch_size: int
    clusters: np.ndarray | None = None
    clusters_from: str = ""
    pretrained: tuple | None = None  # (model config, params)

    @property
    def ids(self) -> list:
        B = self.batch_size
        return [self.images.ids[t * B:(t + 1) * B] if B > 1 else self.images.ids[t] for t in range(len(self.x_T))]

    def to_json(self) -> dict[str, Any]:
        """documents.json of an image run: the tasks' image ids, the image manifest (sha256 of every image's
        pixels), the preprocessing and the colour clusters."""
        out = {"kind": "images", "task": self.task, "T": int(len(self.x_T)), "batch_size": self.batch_size,
               "image_size": self.image_size, "ids": self.ids, "images": self.images.to_json(),
               "x_shape": list(self.x_T.shape)}
        if self.clusters is not None:
            out["clusters"] = {"from": self.clusters_from, "K": int(self.clusters.shape[0]),
                               "values": np.round(self.clusters.astype(np.float64), 6).tolist()}
        return out


def _model_facts(cfg) -> tuple[dict, tuple | None]:
    """The model's input contract (Architecture.image_spec) and, for pretrained runs, the loaded model."""
    arch = registry.get(cfg.model.arch)
    if cfg.model.init == "pretrained":
        mcfg, params = arch.load(cfg.model.hf_path, revision=cfg.model.revision or None)
        if mcfg.arch != arch.name:
            raise config_lib.ConfigError(f"model.arch={arch.name!r} but {cfg.model.hf_path!r} is a {mcfg.arch} model")
        if cfg.model.dropout == "off":
            mcfg = arch.no_dropout(mcfg)
        return arch.image_spec(mcfg), (mcfg, params)
    try:
        mcfg = models.model_config(cfg.model, None, int(cfg.data.image_size))
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None
    return arch.image_spec(mcfg), None


def _image_size(cfg, spec: dict, task: str) -> int:
    """The side of the images the model sees: √C for Image GPT; data.image_size (or the model's own resolution)
    for classifiers, checked against what the model takes."""
    if task == "lm":
        side = math.isqrt(cfg.C)
        if side * side > spec["positions"]:
            raise config_lib.ConfigError(f"C={cfg.C} tokens ({side}×{side} pixels) is more than the model's "
                                         f"{spec['positions']} positions; lower C")
        return side
    size = int(cfg.data.image_size) or int(spec["size"])
    if not size:
        raise config_lib.ConfigError(f"model.arch={cfg.model.arch!r} takes any image size of at least "
                                     f"{spec['min_size']} pixels: set data.image_size (e.g. 224)")
    if spec["size"] and size != spec["size"]:
        raise config_lib.ConfigError(f"data.image_size={size} but the model takes {spec['size']}×{spec['size']} "
                                     f"images; set data.image_size={spec['size']}")
    if size < spec["min_size"]:
        raise config_lib.ConfigError(f"data.image_size={size} is smaller than the model's minimum "
                                     f"{spec['min_size']}×{spec['min_size']}")
    return size


def _load_source(cfg, crop_size: int) -> images_lib.ImageSet:
    try:
        return images_lib.load_images(cfg.data.source, path=cfg.data.path, size=crop_size,
                                      crops_per_image=int(cfg.data.crops_per_image), split=cfg.data.split,
                                      limit=int(cfg.data.limit) or None)
    except RuntimeError as e:  # a tfds download / preparation failure: what to do is in the message
        raise RunError(" ".join(str(e).split())) from None


def _clusters(cfg, images_NHWC: np.ndarray, K: int, pretrained: bool) -> tuple[np.ndarray, str]:
    """Colour clusters (K, 3) in [-1, 1] and where they came from."""
    if cfg.data.clusters:
        return images_lib.load_clusters(cfg.data.clusters, expected_k=K if pretrained else None), cfg.data.clusters
    if pretrained:
        return images_lib.load_clusters(_processor_config(cfg.model.hf_path, cfg.model.revision or None),
                                        expected_k=K), f"{cfg.model.hf_path} preprocessor_config.json"
    return images_lib.kmeans_clusters(images_NHWC, K, seed=int(cfg.seed)), f"k-means (K={K}, seed={cfg.seed})"


def _processor_config(path_or_id: str, revision: str | None) -> str:
    """The pretrained Image GPT's preprocessor_config.json (a local directory's, or downloaded from the Hub)."""
    local = os.path.expanduser(path_or_id)
    if os.path.isdir(local):
        return os.path.join(local, "preprocessor_config.json")
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(path_or_id, "preprocessor_config.json", revision=revision)
    except Exception as e:  # offline, unknown repo
        raise FileNotFoundError(f"the colour clusters of {path_or_id!r} (its preprocessor_config.json) could not be "
                                f"downloaded: {type(e).__name__}: {' '.join(str(e).split())[:200]}; set "
                                f"data.clusters to a local copy") from None


def prepare(cfg) -> ImageTasks:
    """The T tasks of an image run (see the module docstring). Bad images are an ImageDataError (one line)."""
    arch = registry.get(cfg.model.arch)
    spec, pretrained = _model_facts(cfg)
    size = _image_size(cfg, spec, arch.task)
    B = int(cfg.data.batch_size)
    crop_size = size if arch.task == "lm" else int(cfg.data.resize) or size
    pool = _load_source(cfg, crop_size)
    chosen = images_lib.select_images(pool, cfg.T * B, int(cfg.seed), first_n=bool(cfg.data.first_t))
    if arch.task == "lm":
        pix_NHWC = images_lib.resize_images(chosen, size, channels=3, gray_to_rgb=bool(cfg.data.gray_to_rgb))
        K = int(spec["outputs"])
        clusters, where = _clusters(cfg, pix_NHWC, K, pretrained is not None)
        tokens_TC = images_lib.quantize(pix_NHWC, clusters).astype(np.int32)
        return ImageTasks("lm", tokens_TC, np.ones(tokens_TC.shape, bool), chosen, int(clusters.shape[0]) + 1,
                          size, 1, clusters, where, pretrained)
    if spec["channels"] != 3:
        raise config_lib.ConfigError(f"the model takes {spec['channels']}-channel images; the classifier inputs "
                                     f"are RGB (grayscale sources need data.gray_to_rgb=True)")
    mean, std = NORMALIZE[cfg.data.normalize]
    pix_NHWC = images_lib.classifier_inputs(chosen, resize=crop_size, crop=size, mean=mean, std=std,
                                            gray_to_rgb=bool(cfg.data.gray_to_rgb))
    batches = images_lib.make_batches(pix_NHWC, chosen.labels, cfg.T, B, seed=None)
    n_classes = len(pool.class_names) if pool.class_names else int(pool.labels.max()) + 1
    if pretrained is not None and int(batches.labels_TB.max()) >= spec["outputs"]:
        raise images_lib.ImageDataError(
            f"the images have labels up to {int(batches.labels_TB.max())} but the pretrained classifier "
            f"{cfg.model.hf_path!r} has {spec['outputs']} classes")
    return ImageTasks("classify", batches.images_TB.astype(np.float32), batches.labels_TB.astype(np.int32), chosen,
                      n_classes, size, B, pretrained=pretrained)


def build_params(cfg, tasks: ImageTasks, key) -> tuple[Any, dict]:
    """The model config and initial parameters: the pretrained model prepare() loaded, or a fresh init of the
    configured shape whose output size follows the data (model.truncate_vocab: colours + 1, or classes)."""
    if tasks.pretrained is not None:
        mcfg, params = tasks.pretrained
        tasks.pretrained = None  # one copy of the weights: the run's
        return mcfg, params
    out = tasks.vocab_size if cfg.model.truncate_vocab else None
    mcfg = models.model_config(cfg.model, out, tasks.image_size)
    need = registry.get(mcfg).image_spec(mcfg)["outputs"]
    have = tasks.vocab_size - 1 if tasks.task == "lm" else tasks.vocab_size
    if need < have:
        what = "colour clusters" if tasks.task == "lm" else "classes"
        raise config_lib.ConfigError(f"the data has {have} {what} but the model predicts {need}; set "
                                     f"model.truncate_vocab=True (the output size follows the data)")
    return mcfg, models.init_params(mcfg, key)


def eval_batch(cfg, mcfg) -> int:
    """Tasks per evaluation chunk for eval.batch = -1 (see engine.auto_eval_batch for the text runs)."""
    backend = jax.default_backend()
    if registry.get(mcfg).task == "lm":  # Image GPT: as a text document of C tokens over its colours
        doc = eval_doc_bytes(cfg.C, mcfg.d_model, mcfg.d_ff, mcfg.n_colors, mcfg.n_heads,
                             int(cfg.model.attention_block))
        return auto_eval_batch(cfg.T, cfg.C, backend=backend, doc_bytes=doc, free_bytes=_free_bytes())
    images = CPU_EVAL_IMAGES if backend == "cpu" else DEVICE_EVAL_IMAGES
    return int(min(max(images // int(cfg.data.batch_size), 1), cfg.T))


def _free_bytes() -> int | None:
    try:
        stats = jax.devices()[0].memory_stats() or {}
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)) if stats.get("bytes_limit") else None
    except Exception:  # noqa: BLE001 - memory_stats is optional per backend
        return None


def run_bytes(cfg) -> int:
    """A rough upper bound on one image run's memory in a group: parameters, gradients and Adam state (fp32), its
    task arrays twice (training and evaluation copies) and the activations of a training step."""
    try:
        mcfg = models.model_config(cfg.model, None, int(cfg.data.image_size))
        n = models.param_count(models.param_shapes(mcfg))
    except ValueError:  # pretrained shapes are only known after loading: budget for a large model
        n = 150_000_000
    slots = {"sgd": 0, "momentum": 1}.get(cfg.optim.name, 2)
    side = int(cfg.data.image_size) or math.isqrt(cfg.C)
    task = 4 * cfg.T * int(cfg.data.batch_size) * side * side * 3
    act = 4 * int(cfg.data.batch_size) * side * side * 64 * 8
    return int(4 * n * (2 + slots) + 2 * task + act)
