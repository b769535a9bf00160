"""Schema, loading, overriding and validation of a run config.

This is the only module that knows every config key. Config files in `configs/` start from
`base_config()` and change what their experiment needs; `validate` rejects what the engine
cannot honour, with a message that names the key, the bad value and what would be valid.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
from typing import Any, Callable, Sequence

import ml_collections


class ConfigError(ValueError):
    """A config problem the user can fix: printed as one line, no traceback."""


ARCHS = ("gpt_neox", "gpt2", "imagegpt", "vit", "vgg")  # recovery_jax.models.ARCHITECTURES
INITS = ("pythia", "pythia_1b_hardcoded", "normal", "gpt2", "pretrained")
OPTIMIZERS = ("sgd", "momentum", "adam", "adam_reset", "adamw")
SCHEDULES = ("constant", "cosine")
ORDERS = ("cyclic", "shuffled", "partial", "filler")
SOURCES = ("news", "wiki", "files", "cnn_dailymail")
# image sources (recovery_jax/data/images.py), for the image models (docs/PROTOCOL.md §3 Fig 7)
IMAGE_SOURCES = ("skimage", "sklearn_photos", "digits", "folder", "imagefolder", "cifar10", "cifar100", "imagenet")
LABELLED_IMAGE_SOURCES = ("digits", "imagefolder", "cifar10", "cifar100", "imagenet")
NORMALIZATIONS = ("imagenet", "half")
DTYPES = ("float32", "bfloat16")
CHECKPOINT_EVERY = ("none", "epoch", "episode")
PROBES = ("weights", "embed_out", "activations", "grads", "pairwise")


def base_config() -> ml_collections.ConfigDict:
    """Every key with its default. A config file may change values, never add keys."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # The protocol (docs/PROTOCOL.md §1.1): T documents, first C tokens, M steps per episode, E epochs.
    c.T = 25
    c.C = 256
    c.M = 10
    c.E = 5

    c.data = ml_collections.ConfigDict()
    c.data.source = "news"
    c.data.path = ""  # for source=files: a folder of .txt, a .jsonl or a .csv
    c.data.text_field = "text"
    c.data.split = "train"
    c.data.tokenizer = "neox"  # neox | gpt2 | a tokenizer directory | a hub id
    c.data.min_tokens = 0  # 0: documents need >= C tokens; smaller values admit padded documents
    c.data.first_t = False  # take the first T eligible documents instead of a seeded sample
    c.data.block = 0  # tokens kept per document; 0 means C (random-window runs keep more)
    c.data.restrict_vocab = False  # softmax over only the tokens present in the T documents
    # Images (model.arch imagegpt | vit | vgg; recovery_jax/vision.py). Image GPT: one image of C = side² colour
    # tokens per task; classifiers: batch_size labelled images per task.
    c.data.image_size = 0  # classifiers: the crop side (0: the model's resolution); Image GPT: 0 or sqrt(C)
    c.data.resize = 0  # classifiers: shorter side resized to this before the centre crop (0: image_size)
    c.data.batch_size = 1  # images per task (classifiers; Image GPT trains on one image per task)
    c.data.normalize = "imagenet"  # classifier inputs: ImageNet mean/std, or "half" ([-1, 1], google ViTs)
    c.data.clusters = ""  # Image GPT colour clusters (.json / folder / .npy); "": the checkpoint's, or k-means
    c.data.gray_to_rgb = False  # repeat the channel of grayscale images for RGB models
    c.data.crops_per_image = 16  # photo sources (skimage, sklearn_photos): square crops per photograph
    c.data.limit = 0  # read only the first N images of the source (tfds split[:N]); 0: all

    c.model = ml_collections.ConfigDict()
    c.model.arch = "gpt_neox"
    c.model.preset = "pythia-1b"  # a name from recovery_jax.models.PRESETS
    c.model.hf_path = ""  # local HF directory or hub id; weights are loaded when init=pretrained
    c.model.revision = ""  # hub revision, e.g. main, step0, step143000
    c.model.init = "pythia"
    # Overrides of the preset's shape; 0 keeps the preset value.
    c.model.hidden_size = 0
    c.model.num_layers = 0
    c.model.num_heads = 0
    c.model.intermediate_size = 0
    c.model.max_positions = 0
    c.model.truncate_vocab = True  # shrink the embeddings to the tokenizer's length (authors: 50277)
    c.model.dtype = "float32"  # compute dtype; parameters stay float32
    c.model.remat = False
    # Causal attention in query blocks of this many tokens, skipping the all-masked key blocks above the
    # diagonal (same numbers as the full C x C matrix, 1.5-2x faster attention on CPU); 0: full matrix.
    c.model.attention_block = 64
    # fp32 matmul precision: "highest" is true fp32 like the authors' PyTorch runs; "default" lets a GPU use
    # TF32 (faster, ~1e-3 relative error). On CPU both are exact fp32.
    c.model.matmul_precision = "highest"
    c.model.dropout = "off"  # off | from_hf (GPT-2 dropouts active while training)

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"
    c.optim.lr = 1e-3
    c.optim.momentum = 0.9
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.0
    c.optim.schedule = "constant"
    c.optim.min_lr = 0.0
    c.optim.lr_ref_M = 0  # >0: inverse scaling, lr_used = lr * lr_ref_M / M (docs/PROTOCOL.md §3 Fig 19a)
    c.optim.freeze_first = 0  # freeze the embedding and the first B blocks (Fig 5d)
    c.optim.freeze_last = 0  # freeze the last B blocks (the authors' example script)

    c.order = ml_collections.ConfigDict()
    c.order.kind = "cyclic"
    c.order.shuffle_n = 0  # partial: shuffle documents 2..N every epoch
    c.order.filler_min = 20  # filler: random count of one-off documents after the T fixed ones
    c.order.filler_max = 100

    c.variant = ml_collections.ConfigDict()
    c.variant.mask_prob = 0.0  # random token masking (Fig 4a), fresh mask every step
    c.variant.mask_id = -1  # -1: the tokenizer's pad id
    c.variant.window = -1  # random window shift W (Fig 4b); -1 disables
    c.variant.window_start = 128  # the evaluation window is [start, start + C)

    c.eval = ml_collections.ConfigDict()
    c.eval.every_step = False  # also the all-document loss after every gradient step
    # documents per evaluation chunk (same losses whatever the value); 0: all T at once; -1: auto (CPU: ~640
    # tokens per chunk, the cache-friendly size; GPU: what fits in a quarter of the free device memory)
    c.eval.batch = -1

    c.probes = ml_collections.ConfigDict()
    c.probes.names = ""  # comma-separated subset of PROBES
    c.probes.doc = 0  # document whose activations are tracked
    c.probes.epoch = 4  # state after this many epochs for grads / pairwise
    c.probes.grad_layer = -1  # block whose attention weights give the gradient vectors; -1: middle
    c.probes.max_episodes = 0  # keep weight/activation states of the first N episodes; 0: all
    c.probes.sketch_dim = 0  # >0: CountSketch weight states to this many dimensions (big models)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = "epoch"
    c.checkpoint.keep = 2

    # Devices (docs/SCALING.md, recovery_jax/sharding.py): a mesh of runs x model devices. `runs` spreads the
    # run axis of a group (each device group holds R/runs runs); `model` shards each run's parameters and
    # optimizer state (FSDP) and splits the evaluation documents. 0 = auto: every device on `runs` when one
    # run fits a device, else the smallest `model` axis that fits. runs x model = the visible devices.
    c.mesh = ml_collections.ConfigDict()
    c.mesh.runs = 0
    c.mesh.model = 0

    c.progress = True
    return c


# ----------------------------------------------------------------------------- loading


def load_file(path: str, schema: Callable[[], ml_collections.ConfigDict] | None = None
              ) -> tuple[ml_collections.ConfigDict, Any]:
    """The one config-file loader: (get_config(), get_sweep() or None). Every problem is a ConfigError.
    `schema` gives the valid keys (default: a run's, base_config; the pretraining command passes its own)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"_rj_config_{abs(hash(os.path.abspath(path)))}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config file {path!r} is not a Python file; give a .py file with get_config() "
                          f"(see configs/)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"config file {path!r} has no get_config() function")
        cfg = module.get_config()
        sweep = module.get_sweep() if hasattr(module, "get_sweep") else None
    except ConfigError:
        raise
    except Exception as e:  # a broken config file is a config error, not a crash
        raise ConfigError(f"config file {path!r} failed to load: {type(e).__name__}: {e}") from e
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path!r} returned a {type(cfg).__name__}; it must return an "
                          f"ml_collections.ConfigDict (start from recovery_jax.config.base_config())")
    check_keys(cfg, schema or base_config)
    return cfg, sweep


def load_config_file(path: str) -> ml_collections.ConfigDict:
    return load_file(path)[0]


def check_keys(cfg: ml_collections.ConfigDict, schema: Callable[[], ml_collections.ConfigDict] | None = None) -> None:
    """A config file may only use keys the schema knows (catches typos in config files)."""
    valid = flatten((schema or base_config)())
    for key in flatten(cfg):
        if key not in valid:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(valid))}")


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config (ConfigDict or dict) -> {"a.b": value}."""
    out = {}
    items = cfg.items() if hasattr(cfg, "items") else []
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (ml_collections.ConfigDict, dict)):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


_EXPECTED = {bool: "a boolean (true/false)", int: "an integer", float: "a number"}


def _normalise(text: str, current: Any) -> str:
    """Spellings our command lines have always accepted and absl's parsers do not: an integral float for an
    integer key (T=1e2), yes/no for a boolean."""
    if isinstance(current, bool):
        return {"yes": "true", "no": "false"}.get(text.strip().lower(), text)
    if isinstance(current, int):
        try:
            value = float(text)
        except ValueError:
            return text
        return str(int(value)) if value.is_integer() else text
    return text


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Apply `KEY=VALUE` strings (the part after `--config.`), parsed and typed by ml_collections'
    config_flags against the current values (the ecosystem's override syntax)."""
    from absl import flags
    from ml_collections import config_flags

    flat = flatten(cfg)
    argv = ["recovery_jax"]
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like --config.KEY=VALUE")
        key, text = item.split("=", 1)
        if key not in flat:
            close = [k for k in flat if k.split(".")[-1] == key.split(".")[-1]]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; see recovery_jax/config.py for all keys")
        argv.append(f"--config.{key}={_normalise(text, flat[key])}")
    values = flags.FlagValues()
    config_flags.DEFINE_config_dict("config", copy.deepcopy(cfg), flag_values=values, lock_config=False,
                                    sys_argv=argv)
    try:
        values(argv)
    except flags.Error as e:
        key = next((o.split("=", 1)[0] for o in overrides if f"--config.{o.split('=', 1)[0]}=" in str(e)), None)
        if key is None:
            raise ConfigError(str(e).splitlines()[0]) from None
        text = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key][-1]
        raise ConfigError(f"--config.{key}={text!r}: expected {_EXPECTED.get(type(flat[key]), 'a string')}") from None
    return values.config


def to_dict(cfg: ml_collections.ConfigDict) -> dict:
    return json.loads(cfg.to_json())


# Keys that change how a run executes, not what it computes (any value gives the same losses up to fp32
# rounding): a run may be resumed, or a finished run reused by a sweep, with other values of these.
PERFORMANCE_KEYS = ("progress", "eval.batch", "model.attention_block", "mesh.runs", "mesh.model")


def without_performance_keys(d: dict) -> dict:
    """A nested config dict without PERFORMANCE_KEYS (what run directories and sweeps compare)."""
    out = copy.deepcopy(d)
    for key in PERFORMANCE_KEYS:
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def with_defaults(d: dict) -> dict:
    """A stored config (config.json) with the keys it lacks filled from today's defaults: a run written
    before a key was added ran with that key's default. Keys the schema no longer knows are kept."""
    def merge(base: dict, cfg: dict) -> dict:
        out = dict(base)
        for k, v in cfg.items():
            out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return out
    return merge(to_dict(base_config()), d)


def from_dict(d: dict) -> ml_collections.ConfigDict:
    """A config.json dict back into a ConfigDict (values are already typed)."""
    cfg = base_config()
    valid = flatten(cfg)
    for key, value in flatten(d).items():
        if key not in valid:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(valid))}")
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        try:
            node[leaf] = float(value) if isinstance(valid[key], float) and isinstance(value, int) else value
        except TypeError:
            raise ConfigError(f"{key}={value!r} has type {type(value).__name__}; expected "
                              f"{type(valid[key]).__name__}") from None
    return cfg


# ----------------------------------------------------------------------------- validation


def _choice(cfg, key, choices):
    value = flatten(cfg)[key]
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}")


def _range(cfg, key, lo=None, hi=None, lo_open=False):
    value = flatten(cfg)[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} must be a finite number")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{key}={value!r} must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}={value!r} must be <= {hi}")


def probe_names(cfg) -> list[str]:
    return [p.strip() for p in cfg.probes.names.split(",") if p.strip()]


# The values validate checks one by one, before the checks that relate values: key -> its choices, and key ->
# the (lowest, highest) value allowed, None for no bound.
_CHOICES = {
    "data.source": SOURCES + IMAGE_SOURCES, "data.normalize": NORMALIZATIONS,
    "model.arch": ARCHS, "model.init": INITS, "model.dtype": DTYPES,
    "model.matmul_precision": ("highest", "high", "default"), "model.dropout": ("off", "from_hf"),
    "optim.name": OPTIMIZERS, "optim.schedule": SCHEDULES, "order.kind": ORDERS, "checkpoint.every": CHECKPOINT_EVERY,
}
_BOUNDS = {
    "T": (1, None), "C": (2, None), "M": (1, None), "E": (1, None), "seed": (0, None),
    "data.min_tokens": (0, None), "data.block": (0, None), "data.image_size": (0, None), "data.resize": (0, None),
    "data.limit": (0, None), "data.batch_size": (1, None), "data.crops_per_image": (1, None),
    **{f"model.{key}": (0, None) for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size",
                                              "max_positions")},
    "optim.momentum": (0.0, 1.0), "optim.b1": (0.0, 1.0), "optim.b2": (0.0, 1.0), "optim.eps": (0.0, None),
    "optim.weight_decay": (0.0, None), "optim.min_lr": (0.0, None), "optim.lr_ref_M": (0, None),
    "optim.freeze_first": (0, None), "optim.freeze_last": (0, None),
    "variant.mask_prob": (0.0, 1.0), "variant.mask_id": (-1, None), "variant.window": (-1, None),
    "variant.window_start": (0, None),
    "probes.grad_layer": (-1, None), "probes.max_episodes": (0, None), "probes.sketch_dim": (0, None),
    "checkpoint.keep": (1, None), "mesh.runs": (0, None), "mesh.model": (0, None),
}


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Reject every value the engine would otherwise trip over later (or silently ignore)."""
    check_keys(cfg)
    base = flatten(base_config())
    for key, value in flatten(cfg).items():
        want = type(base[key])
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(f"{key}={value!r} has type {type(value).__name__}; expected {want.__name__}")
    for key, choices in _CHOICES.items():
        _choice(cfg, key, choices)
    for key, (lo, hi) in _BOUNDS.items():
        _range(cfg, key, lo, hi)
    _range(cfg, "optim.lr", 0.0, lo_open=True)
    if cfg.data.source == "files" and not cfg.data.path:
        raise ConfigError("data.source='files' needs data.path (a folder of .txt, a .jsonl or a .csv file)")
    if cfg.data.block and cfg.data.block < cfg.C:
        raise ConfigError(f"data.block={cfg.data.block} must be 0 or >= C={cfg.C}")
    _check_images(cfg)
    if cfg.model.init == "pretrained" and not cfg.model.hf_path:
        raise ConfigError("model.init='pretrained' needs model.hf_path (a local HF directory or a hub id)")
    if cfg.optim.freeze_first and cfg.optim.freeze_last:
        raise ConfigError("optim.freeze_first and optim.freeze_last cannot both be set")
    if cfg.order.kind == "partial":
        if not 2 <= cfg.order.shuffle_n <= cfg.T:
            raise ConfigError(f"order.shuffle_n={cfg.order.shuffle_n} must be in [2, T={cfg.T}] for order.kind='partial'")
    if cfg.order.kind == "filler":
        if not 0 <= cfg.order.filler_min <= cfg.order.filler_max:
            raise ConfigError(
                f"order.filler_min={cfg.order.filler_min}, order.filler_max={cfg.order.filler_max}: need 0 <= min <= max")
    if cfg.variant.mask_prob >= 1.0:
        raise ConfigError(f"variant.mask_prob={cfg.variant.mask_prob} must be < 1")
    if cfg.variant.window >= 0:
        block = cfg.data.block or cfg.C
        lo = cfg.variant.window_start - cfg.variant.window
        hi = cfg.variant.window_start + cfg.C + cfg.variant.window
        if lo < 0 or hi > block:
            raise ConfigError(
                f"variant.window={cfg.variant.window} with window_start={cfg.variant.window_start} and C={cfg.C} "
                f"needs tokens [{lo}, {hi}) but data.block={block}; raise data.block to >= {hi} "
                f"(and window_start >= window)")
    if cfg.eval.batch < -1:
        raise ConfigError(f"eval.batch={cfg.eval.batch} is not valid: -1 (auto-sized chunks), 0 (all T documents "
                          f"at once) or N >= 1 documents per evaluation chunk")
    if cfg.model.attention_block < 0:
        raise ConfigError(f"model.attention_block={cfg.model.attention_block} is not valid: 0 (full C x C "
                          f"attention matrix) or N >= 1 query rows per block (default 64)")
    for name in probe_names(cfg):
        if name not in PROBES:
            raise ConfigError(f"unknown probe {name!r} in probes.names; valid probes: {', '.join(PROBES)}")
    if probe_names(cfg):
        _range(cfg, "probes.doc", 0, cfg.T - 1)
        _range(cfg, "probes.epoch", 1, cfg.E)
    if cfg.order.kind == "filler" and cfg.data.restrict_vocab:
        raise ConfigError("data.restrict_vocab cannot be combined with order.kind='filler' (filler documents bring "
                          "tokens outside the T documents); set data.restrict_vocab=false")
    if cfg.order.kind == "filler" and "pairwise" in probe_names(cfg):
        raise ConfigError("the pairwise probe needs the T documents only; not with order.kind='filler'")
    if cfg.model.init != "pretrained":
        _check_model_shape(cfg)
    return cfg


def _check_images(cfg) -> None:
    """Image sources go with image models and text corpora with language models (docs/PROTOCOL.md §3 Fig 7);
    what an image run needs and what it cannot do."""
    from recovery_jax.models import registry  # jax/flax: imported only when a config is validated

    arch = registry.get(cfg.model.arch)
    image_source = cfg.data.source in IMAGE_SOURCES
    if (arch.data == "images") != image_source:
        if image_source:
            models = [a.name for a in registry.ARCHITECTURES.values() if a.data == "images"]
            raise ConfigError(f"data.source={cfg.data.source!r} is an image source but model.arch={cfg.model.arch!r} "
                              f"is a language model; image sources need an image model.arch ({', '.join(models)})")
        raise ConfigError(f"data.source={cfg.data.source!r} is a text corpus but model.arch={cfg.model.arch!r} is an "
                          f"image model; use an image data.source ({', '.join(IMAGE_SOURCES)})")
    if not image_source:
        return
    d = cfg.data
    if d.source in ("folder", "imagefolder") and not d.path:
        raise ConfigError(f"data.source={d.source!r} needs data.path (a folder of images"
                          + (", one sub-folder per class)" if d.source == "imagefolder" else ")"))
    if cfg.model.init not in ("normal", "pretrained"):
        raise ConfigError(f"model.init={cfg.model.init!r}: image models use their own (Hugging Face / torchvision) "
                          f"initialisation; choose one of: normal, pretrained")
    if arch.task == "classify":
        if d.source not in LABELLED_IMAGE_SOURCES:
            raise ConfigError(f"data.source={d.source!r} has no labels but model.arch={cfg.model.arch!r} is a "
                              f"classifier; choose a labelled source: {', '.join(LABELLED_IMAGE_SOURCES)}")
        if d.resize and d.image_size and d.resize < d.image_size:
            raise ConfigError(f"data.resize={d.resize} must be 0 or >= data.image_size={d.image_size} (resize the "
                              f"shorter side, then centre-crop)")
    else:  # one image per task, C = side x side colour tokens
        side = math.isqrt(cfg.C)
        if side * side != cfg.C:
            raise ConfigError(f"C={cfg.C} is not a square: an image of side s is s*s colour tokens (e.g. C=1024 for "
                              f"32x32 images)")
        if d.image_size not in (0, side):
            raise ConfigError(f"data.image_size={d.image_size} but C={cfg.C} tokens are {side}x{side} images; set "
                              f"data.image_size=0 or {side}")
        if d.batch_size != 1:
            raise ConfigError(f"data.batch_size={d.batch_size}: model.arch={cfg.model.arch!r} trains on one image per "
                              f"task (the authors' batch size 1); set data.batch_size=1")
    unsupported = {"variant.mask_prob": cfg.variant.mask_prob > 0, "variant.window": cfg.variant.window >= 0,
                   "order.kind='filler'": cfg.order.kind == "filler", "probes.names": bool(probe_names(cfg)),
                   "optim.freeze_first": cfg.optim.freeze_first > 0, "optim.freeze_last": cfg.optim.freeze_last > 0,
                   "data.restrict_vocab": bool(d.restrict_vocab)}
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ConfigError(f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} for text runs; image runs "
                          f"(data.source={d.source!r}) do not support {'it' if len(bad) == 1 else 'them'}")


def _check_model_shape(cfg) -> None:
    """The from-scratch model the config describes: preset vs arch, heads vs width, C vs positions."""
    from recovery_jax import models  # jax/flax: imported only when a config is validated

    try:
        mcfg = models.model_config(cfg.model, None, cfg.data.image_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    arch = models.registry.get(mcfg)
    if arch.port:  # image models: the C of Image GPT is checked against its positions here, the rest in vision.py
        spec = arch.image_spec(mcfg)
        if arch.task == "classify" and not (cfg.data.image_size or spec["size"]):
            raise ConfigError(f"model.arch={cfg.model.arch!r} takes any image size of at least {spec['min_size']} "
                              f"pixels: set data.image_size (e.g. 224)")
        positions = spec.get("positions", cfg.C)
        if cfg.C > positions:
            raise ConfigError(f"C={cfg.C} is larger than the model's maximum positions ({positions}); "
                              f"lower C or raise model.max_positions")
        return
    if cfg.C > mcfg.max_positions:
        raise ConfigError(f"C={cfg.C} is larger than the model's maximum positions ({mcfg.max_positions}); "
                          f"lower C or raise model.max_positions")


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate `--config.KEY=VALUE` overrides from the other arguments."""
    overrides, rest = [], []
    it = iter(argv)
    for arg in it:
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" not in body:
                value = next(it, None)
                if value is None or value.startswith("--"):
                    raise ConfigError(f"{arg} needs a value: --config.{body}=VALUE")
                body = f"{body}={value}"
            overrides.append(body)
        else:
            rest.append(arg)
    return overrides, rest


def load(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """A config file with command-line overrides, validated: the config gate of every entry point."""
    return validate(apply_overrides(load_config_file(path), overrides))


def derive(here: str, name: str) -> ml_collections.ConfigDict:
    """The config of a sibling config file (for files that change one thing of another).
    Use as `derive(__file__, "default.py")`; names are relative to the calling file's folder."""
    return load_config_file(os.path.join(os.path.dirname(os.path.abspath(here)), name))
