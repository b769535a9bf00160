"""Image sources, seeded selection and preprocessing for the vision experiments (Fig 7).

Every source returns an :class:`ImageSet`: string ``ids`` in a fixed, deterministic order,
uint8 pixels of shape (H, W, C) per image with C = 3 (RGB) or 1 (grayscale), int
``labels`` and ``class_names`` for labelled sets, the ``source`` name and the ``params``
it was loaded with.  Sources (:data:`IMAGE_SOURCES`):

``"skimage"``
    The photographs shipped inside the installed scikit-image wheel (``skimage/data/``),
    located on disk as files of the distribution (scikit-image is never imported, and
    nothing is fetched: only files present in the wheel are used).  Default: the RGB
    photographs :data:`SKIMAGE_RGB`; ``names="gray"`` gives the grayscale ones
    :data:`SKIMAGE_GRAY`, or a list of names.  Each photograph is cut into
    ``crops_per_image`` square crops at seeded positions (see :func:`photo_crops`), each
    resized to ``size`` × ``size``; every crop is one image, id ``"astronaut@x,y,s"``
    (top-left corner ``x, y`` and side ``s`` in the photograph's pixels).
``"sklearn_photos"``
    ``china.jpg`` and ``flower.jpg`` of scikit-learn (``sklearn/datasets/images/``), cut
    into crops likewise.
``"digits"``
    scikit-learn's digits (``sklearn/datasets/data/digits.csv.gz``, read directly):
    1797 grayscale 8×8 images, labels 0..9; the values 0..16 are scaled to 0..255
    (``round(v * 255 / 16)``).  Ids ``"digits:<row>"``.  ``path=`` overrides the file.
``"folder"``
    ``path`` is a folder of image files (``.png .jpg .jpeg .bmp .webp``, any case,
    searched recursively), read with Pillow; unlabelled; ids are the paths relative to
    the folder, sorted.  Pixels are read lazily (only the selected images are opened).
``"imagefolder"``
    ``path`` holds one sub-folder per class (the torchvision ``ImageFolder`` layout the
    authors used for ImageNet): classes sorted by folder name → labels 0..K-1, files in
    torchvision's order (so a seeded index selects the same file as there); ids
    ``"<class>/<relative path>"``.  Lazy like ``"folder"``.
``"cifar10"``, ``"cifar100"``, ``"imagenet"``
    Through TensorFlow Datasets (``cifar10``, ``cifar100``, ``imagenet2012``):
    ``tfds.load(name, split=split, data_dir=path or None, shuffle_files=False,
    with_info=True)``; ImageNet needs the manually downloaded archives in ``manual_dir``.
    ``limit`` reads only ``split[:limit]`` (advised for ImageNet: the whole split is read
    into memory).  Needs ``pip install 'recovery_jax[tfds]'`` and, the first time,
    network access (or a prepared ``data_dir``).

Images from Pillow keep their native mode where it is grayscale ("L", "1", "LA" → 1
channel; 16-bit/float modes are scaled to 0..255); every other mode (RGBA, P, CMYK, ...)
is converted to RGB (as torchvision's loader does).

Selection (:func:`select_images`) takes the first ``n`` images of
``numpy.random.default_rng(seed).permutation(N)``, like the text documents: the images for
a smaller ``n`` are a prefix of those for a larger one.  :func:`make_batches` groups
images into T batches of ``batch_size`` (the authors: 800 ImageNet images in 25 fixed
batches of 32, chosen by ``random.sample`` and batched in that order).
:meth:`ImageSet.to_json` is the manifest (ids, labels, sha256 of each image's pixel bytes,
shapes, source and parameters) saved with a run.

Preprocessing: :func:`resize_images` (plain resize to the model's resolution, Pillow
bilinear, as the Image GPT image processor does), :func:`classifier_inputs` (resize the
shorter side to 256, centre crop 224, ImageNet mean/std: torchvision's ``VGG19_Weights
.DEFAULT.transforms()``), grayscale → RGB only with ``gray_to_rgb=True``, and colour
quantisation for Image GPT (:func:`quantize`, :func:`load_clusters`,
:func:`kmeans_clusters`).

Bad input raises an :class:`ImageDataError` (a ``ValueError``) subclass with a one-line
message naming the bad value and what would be valid.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

IMAGE_SOURCES = (
    "skimage", "sklearn_photos", "digits", "folder", "imagefolder", "cifar10", "cifar100", "imagenet",
)
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")

SKIMAGE_DIST = "scikit-image"
SKLEARN_DIST = "scikit-learn"
SKIMAGE_DIR = "skimage/data"
SKLEARN_PHOTO_DIR = "sklearn/datasets/images"
DIGITS_FILE = "sklearn/datasets/data/digits.csv.gz"

# Photographs in the scikit-image 0.26 wheel (synthetic test patterns, logos and the tiny
# microaneurysms crop are left out).  name -> file name.
SKIMAGE_RGB = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "ihc": "ihc.png",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
}
SKIMAGE_GRAY = {
    "brick": "brick.png",
    "camera": "camera.png",
    "cell": "cell.png",
    "clock_motion": "clock_motion.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "moon": "moon.png",
    "page": "page.png",
    "text": "text.png",
}
SKLEARN_PHOTOS = {"china": "china.jpg", "flower": "flower.jpg"}

TFDS_NAMES = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet2012"}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- errors


class ImageDataError(ValueError):
    """Bad image-data input; the one-line message names the bad value and the valid ones."""


class UnknownImageSourceError(ImageDataError):
    pass


class ImageTooSmallError(ImageDataError):
    pass


class ChannelMismatchError(ImageDataError):
    pass


class GrayscaleImageError(ChannelMismatchError):
    pass


class NotEnoughImagesError(ImageDataError):
    pass


class ClassLayoutError(ImageDataError):
    pass


class ClusterFileError(ImageDataError):
    pass


class EmptyFolderError(ImageDataError):
    pass


class UnreadableImageError(ImageDataError):
    pass


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- image set


@dataclass
class ImageSet:
    """Images with ids, optional labels and provenance.

    ``pixels`` is a uint8 array (N, H, W, C) when all images share one shape, else a list of
    (H, W, C) arrays; file-backed sets (``"folder"``, ``"imagefolder"``) have ``pixels=None``
    and ``paths`` instead, read on access.  ``labels`` is int64 [N] or None.  ``seed`` and
    ``pool_size`` are set by :func:`select_images`.
    """

    ids: list[str]
    source: str
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    pixels: np.ndarray | list | None = field(default=None, repr=False)
    paths: list[Path] | None = field(default=None, repr=False)
    seed: int | None = None
    pool_size: int | None = None

    def __post_init__(self):
        n = len(self.ids)
        if self.pixels is None and self.paths is None:
            raise ValueError("ImageSet needs pixels or paths")
        if self.pixels is not None and len(self.pixels) != n:
            raise ValueError(f"ImageSet: {len(self.pixels)} images but {n} ids")
        if self.paths is not None and len(self.paths) != n:
            raise ValueError(f"ImageSet: {len(self.paths)} paths but {n} ids")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (n,):
                raise ValueError(f"ImageSet: labels of shape {self.labels.shape}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 (H, W, C)."""
        if self.pixels is not None:
            return self.pixels[i]
        return read_image(self.paths[i])

    def image_list(self) -> list[np.ndarray]:
        """All images as a list of uint8 (H, W, C) arrays (reads files of lazy sets)."""
        if isinstance(self.pixels, np.ndarray):
            return list(self.pixels)
        return [self.image(i) for i in range(len(self))]

    @property
    def images_NHWC(self) -> np.ndarray:
        """All images stacked into one uint8 (N, H, W, C) array; they must share one shape."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels
        return _stack_or_raise(self.image_list(), self.ids, self.source)

    def load(self) -> "ImageSet":
        """This set with its pixels read into memory (stacked when the shapes agree)."""
        if self.pixels is not None:
            return self
        return replace(self, pixels=_maybe_stack(self.image_list()), paths=None)

    def take(self, indices: Sequence[int]) -> "ImageSet":
        """The images at ``indices`` (in that order), with their pixels read."""
        idx = [int(i) for i in indices]
        if isinstance(self.pixels, np.ndarray):
            pixels = self.pixels[np.asarray(idx, dtype=np.int64)] if idx else self.pixels[:0]
        else:
            pixels = _maybe_stack([self.image(i) for i in idx])
        labels = None if self.labels is None else self.labels[np.asarray(idx, dtype=np.int64)]
        return replace(self, ids=[self.ids[i] for i in idx], labels=labels, pixels=pixels,
                       paths=None)

    def to_json(self) -> dict[str, Any]:
        """The manifest: provenance, ids, labels, per-image sha256 of the pixel bytes, shapes."""
        images = self.image_list()
        hashes = [image_sha256(im) for im in images]
        shapes = [list(map(int, im.shape)) for im in images]
        overall = hashlib.sha256()
        for h, s in zip(hashes, shapes):
            overall.update(f"{h}:{'x'.join(map(str, s))};".encode())
        return {
            "source": self.source,
            "params": _jsonable(self.params),
            "seed": None if self.seed is None else int(self.seed),
            "pool_size": None if self.pool_size is None else int(self.pool_size),
            "n": len(self),
            "ids": list(self.ids),
            "labels": None if self.labels is None else [int(v) for v in self.labels],
            "class_names": None if self.class_names is None else list(self.class_names),
            "sha256": hashes,
            "shapes": shapes,
            "pixels_sha256": overall.hexdigest(),
        }


def image_sha256(image: np.ndarray) -> str:
    """sha256 of an image's uint8 pixel bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _maybe_stack(images: list[np.ndarray]):
    if images and all(im.shape == images[0].shape for im in images):
        return np.stack(images).astype(np.uint8, copy=False)
    if not images:
        return np.zeros((0, 0, 0, 0), np.uint8)
    return images


def _stack_or_raise(images: list[np.ndarray], ids: Sequence[str], source: str) -> np.ndarray:
    stacked = _maybe_stack(images)
    if isinstance(stacked, np.ndarray):
        return stacked
    first = images[0].shape
    j = next(j for j, im in enumerate(images) if im.shape != first)
    raise ImageDataError(
        f"images of source {source!r} have different shapes ({ids[0]!r} is {first}, {ids[j]!r} "
        f"is {images[j].shape}); bring them to one size with resize_images(...) or "
        f"classifier_inputs(...) first"
    )


# --------------------------------------------------------------------------- reading files


def _pil_to_array(img) -> np.ndarray:
    mode = img.mode
    if mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"), dtype=np.uint8)[..., None]
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            hi = 65535.0
        else:
            hi = float(arr.max()) if arr.size and arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr * (255.0 / hi)), 0, 255)
        return arr.astype(np.uint8)[..., None]
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(path) -> np.ndarray:
    """One image file as uint8 (H, W, C), C = 1 for grayscale modes, else 3 (RGB).

    Raises :class:`UnreadableImageError` naming the file when Pillow cannot decode it.
    """
    from PIL import Image

    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            arr = _pil_to_array(img)
    except FileNotFoundError:
        raise
    except Exception as e:  # Pillow raises several types for corrupt / unknown files
        raise UnreadableImageError(
            f"cannot read image file {str(p)!r}: {type(e).__name__}: {_one_line(e)}; valid files "
            f"are images Pillow can decode ({', '.join(IMAGE_EXTENSIONS)})"
        ) from None
    return np.ascontiguousarray(arr)


def _locate(dist_name: str, rel_path: str, source: str) -> Path:
    from .sources import locate_asset

    try:
        importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"image source {source!r} needs the files of the {dist_name!r} distribution, which is "
            f"not installed; install it with `pip install 'recovery_jax[vision]'`"
        ) from None
    return locate_asset(dist_name, rel_path)


def _dist_version(dist_name: str) -> str | None:
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- crops


def _resize_pil(image_HWC: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if image_HWC.shape[0] == height and image_HWC.shape[1] == width:
        return image_HWC
    if image_HWC.shape[2] == 1:
        out = Image.fromarray(image_HWC[..., 0], "L").resize((width, height), Image.BILINEAR)
        return np.asarray(out, dtype=np.uint8)[..., None]
    out = Image.fromarray(image_HWC, "RGB").resize((width, height), Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def _check_size(name: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ImageDataError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def photo_crops(
    photo_HWC: np.ndarray,
    name: str,
    *,
    size: int,
    n: int,
    seed: int = 0,
    side_range: tuple[float, float] = (0.25, 1.0),
) -> tuple[list[str], list[np.ndarray]]:
    """``n`` distinct square crops of one photograph, each resized to ``size`` × ``size``.

    The crop side ``s`` is drawn uniformly among the integers in
    ``[max(size, round(lo·short)), max(that, round(hi·short))]`` (``short`` = the shorter
    side; crops are never upsampled), then the top-left corner uniformly; the generator is
    ``default_rng([seed, crc32(name)])``, so each photograph's crops depend only on its name
    and ``seed``.  Ids ``"name@x,y,s"``.  Fewer than ``n`` crops come back only when the
    photograph has fewer distinct crop positions.
    """
    h, w = photo_HWC.shape[:2]
    short = min(h, w)
    if short < size:
        raise ImageTooSmallError(
            f"photo {name!r} is {h}×{w} pixels, smaller than the requested crop resolution "
            f"size={size}; use size <= {short} or other photos"
        )
    lo_f, hi_f = (float(v) for v in side_range)
    if not (0.0 < lo_f <= hi_f <= 1.0):
        raise ImageDataError(
            f"side_range must be (lo, hi) with 0 < lo <= hi <= 1 (fractions of the shorter side), "
            f"got {side_range!r}"
        )
    lo = max(size, int(round(lo_f * short)))
    hi = min(short, max(lo, int(round(hi_f * short))))
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])
    seen: set[tuple[int, int, int]] = set()
    ids, crops = [], []
    attempts = 0
    while len(ids) < n and attempts < 50 * n:
        attempts += 1
        s = int(rng.integers(lo, hi + 1))
        x = int(rng.integers(0, w - s + 1))
        y = int(rng.integers(0, h - s + 1))
        if (x, y, s) in seen:
            continue
        seen.add((x, y, s))
        ids.append(f"{name}@{x},{y},{s}")
        crops.append(_resize_pil(np.ascontiguousarray(photo_HWC[y:y + s, x:x + s]), size, size))
    return ids, crops


def _resolve_names(source: str, names, table_rgb: dict, table_gray: dict | None) -> list[str]:
    tables = dict(table_rgb)
    if table_gray:
        tables.update(table_gray)
    if names is None or names == "rgb":
        return list(table_rgb)
    if names == "gray":
        if not table_gray:
            raise ImageDataError(f"image source {source!r} has no grayscale photos; valid names: "
                                 f"{sorted(tables)}")
        return list(table_gray)
    if names == "all":
        return list(tables)
    if isinstance(names, str):
        names = [names]
    names = list(names)
    bad = [n for n in names if n not in tables]
    if bad:
        raise ImageDataError(
            f"unknown photo name(s) {bad} for image source {source!r}; valid names: "
            f"{sorted(tables)} (or 'rgb'{', gray' if table_gray else ''}, 'all')"
        )
    if not names:
        raise ImageDataError(f"image source {source!r}: names is empty; valid names: {sorted(tables)}")
    return names


def _load_photo_crops(source: str, *, size, crops_per_image: int, names, side_range, crop_seed: int,
                      path: str) -> ImageSet:
    if size is None:
        raise ImageDataError(f"image source {source!r} needs size=<crop resolution in pixels>, e.g. 32")
    size = _check_size("size", size)
    crops_per_image = _check_size("crops_per_image", crops_per_image)
    if source == "skimage":
        dist, folder, rgb, gray = SKIMAGE_DIST, SKIMAGE_DIR, SKIMAGE_RGB, SKIMAGE_GRAY
    else:
        dist, folder, rgb, gray = SKLEARN_DIST, SKLEARN_PHOTO_DIR, SKLEARN_PHOTOS, None
    chosen = _resolve_names(source, names, rgb, gray)
    table = dict(rgb, **(gray or {}))
    ids, crops, files = [], [], []
    for name in chosen:
        if path:
            f = Path(path) / table[name]
            if not f.is_file():
                raise FileNotFoundError(f"image source {source!r}: photo file {str(f)!r} does not exist")
        else:
            f = _locate(dist, f"{folder}/{table[name]}", source)
        files.append(str(f))
        photo = read_image(f)
        c_ids, c_ims = photo_crops(photo, name, size=size, n=crops_per_image, seed=crop_seed,
                                   side_range=side_range)
        ids += c_ids
        crops += c_ims
    channels = {im.shape[2] for im in crops}
    if len(channels) > 1:
        raise ChannelMismatchError(
            f"image source {source!r}: names {chosen} mix RGB and grayscale photos; choose names of "
            f"one kind (RGB: {sorted(rgb)}{'; grayscale: ' + str(sorted(gray)) if gray else ''})"
        )
    params = {"size": size, "crops_per_image": crops_per_image, "names": chosen,
              "side_range": [float(v) for v in side_range], "crop_seed": int(crop_seed),
              "files": [Path(f).name for f in files], "dist": dist, "dist_version": _dist_version(dist)}
    if path:
        params["path"] = str(path)
    return ImageSet(ids=ids, source=source, pixels=np.stack(crops).astype(np.uint8), params=params)


# --------------------------------------------------------------------------- digits / folders


def _load_digits(path: str) -> ImageSet:
    p = Path(path) if path else _locate(SKLEARN_DIST, DIGITS_FILE, "digits")
    if not p.is_file():
        raise FileNotFoundError(f"digits file {str(p)!r} does not exist")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    table = np.loadtxt(io.StringIO(raw.decode("ascii")), delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape[1] != 65:
        raise ImageDataError(
            f"digits file {str(p)!r} has {table.shape[1]} columns per row; expected 65 (64 pixel "
            f"values 0..16 of an 8×8 image, then the label)"
        )
    values_N64 = table[:, :64]
    labels_N = table[:, 64].astype(np.int64)
    images_NHWC = np.round(values_N64 * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images_NHWC = images_NHWC.reshape(-1, 8, 8, 1)
    return ImageSet(
        ids=[f"digits:{i}" for i in range(len(labels_N))],
        source="digits",
        labels=labels_N,
        class_names=[str(k) for k in range(10)],
        pixels=images_NHWC,
        params={"file": p.name, "dist": SKLEARN_DIST, "dist_version": _dist_version(SKLEARN_DIST)}
        if not path else {"path": str(path)},
    )


def _is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _folder_path(source: str, path: str) -> Path:
    if not path:
        raise ImageDataError(f"image source {source!r} needs path=<folder of images>")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"image source {source!r}: path {str(p)!r} does not exist")
    if not p.is_dir():
        raise ImageDataError(f"image source {source!r}: path {str(p)!r} is not a folder; valid: a "
                             f"folder of image files ({', '.join(IMAGE_EXTENSIONS)})")
    return p


def _load_folder(path: str) -> ImageSet:
    root = _folder_path("folder", path)
    files = sorted((f for f in root.rglob("*") if f.is_file() and _is_image_file(f.name)),
                   key=lambda f: f.relative_to(root).as_posix())
    if not files:
        raise EmptyFolderError(
            f"image folder {str(root)!r} has no image files (looked recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    return ImageSet(ids=[f.relative_to(root).as_posix() for f in files], source="folder",
                    paths=files, params={"path": str(root)})


def _load_imagefolder(path: str) -> ImageSet:
    root = _folder_path("imagefolder", path)
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    layout = "<path>/<class name>/<image files> (torchvision ImageFolder) with at least 2 classes"
    if not classes:
        raise ClassLayoutError(f"image folder {str(root)!r} has no class sub-folders; the imagefolder "
                               f"layout is {layout}")
    if len(classes) == 1:
        raise ClassLayoutError(
            f"image folder {str(root)!r} has a single class folder {classes[0]!r}; the imagefolder "
            f"layout needs at least 2 classes (use source 'folder' for unlabelled images)"
        )
    files, labels, ids, empty = [], [], [], []
    for label, cls in enumerate(classes):
        n_before = len(files)
        for dirpath, _, fnames in sorted(os.walk(root / cls, followlinks=True)):
            for fname in sorted(fnames):
                if _is_image_file(fname):
                    f = Path(dirpath) / fname
                    files.append(f)
                    labels.append(label)
                    ids.append(f.relative_to(root).as_posix())
        if len(files) == n_before:
            empty.append(cls)
    if not files:
        raise ClassLayoutError(
            f"image folder {str(root)!r} has no image files in its class folders {classes}; expected "
            f"{', '.join(IMAGE_EXTENSIONS)} files in the layout {layout}"
        )
    if empty:
        raise ClassLayoutError(
            f"class folder(s) {empty} under {str(root)!r} hold no image files "
            f"({', '.join(IMAGE_EXTENSIONS)}); every class needs at least one image"
        )
    return ImageSet(ids=ids, source="imagefolder", labels=np.asarray(labels, np.int64),
                    class_names=classes, paths=files, params={"path": str(root)})


# --------------------------------------------------------------------------- tfds


def _load_tfds(source: str, *, split: str, data_dir: str, manual_dir: str, limit: int | None) -> ImageSet:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            f"image source {source!r} needs TensorFlow Datasets: pip install 'recovery_jax[tfds]' "
            f"(import failed: {e})"
        ) from None
    name = TFDS_NAMES[source]
    tfds_split = split if limit is None or "[" in split else f"{split}[:{limit}]"
    kwargs: dict[str, Any] = {}
    if manual_dir:
        kwargs["download_and_prepare_kwargs"] = {
            "download_config": tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))}
    try:
        ds, info = tfds.load(name, split=tfds_split, data_dir=os.fspath(data_dir) if data_dir else None,
                             shuffle_files=False, with_info=True, **kwargs)
    except Exception as e:  # download / preparation failure
        hint = (" ImageNet (imagenet2012) must be downloaded by hand: pass manual_dir=<folder with "
                "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar>, or use source 'imagefolder'."
                if source == "imagenet" else "")
        raise RuntimeError(
            f"could not load {name} split {tfds_split!r} through tensorflow_datasets: "
            f"{type(e).__name__}: {_one_line(e)}. The first use downloads and prepares the data set, "
            f"which needs network access (or a prepared copy under data_dir=path).{hint}"
        ) from e
    try:
        class_names = [str(c) for c in info.features["label"].names]
    except Exception:
        class_names = None
    ids, images, labels = [], [], []
    for i, ex in enumerate(tfds.as_numpy(ds)):
        img = np.asarray(ex["image"], dtype=np.uint8)
        if img.ndim == 2:
            img = img[..., None]
        images.append(img)
        labels.append(int(ex["label"]))
        raw_id = ex.get("id", ex.get("file_name"))
        if raw_id is None:
            ids.append(f"{name}:{split}:{i}")
        else:
            ids.append(raw_id.decode("utf-8") if isinstance(raw_id, bytes) else str(raw_id))
    return ImageSet(ids=ids, source=source, labels=np.asarray(labels, np.int64), class_names=class_names,
                    pixels=_maybe_stack(images),
                    params={"tfds_name": name, "split": tfds_split,
                            "data_dir": os.fspath(data_dir) if data_dir else None,
                            "tfds_version": str(getattr(info, "version", ""))})


# --------------------------------------------------------------------------- dispatcher


def list_photos(source: str = "skimage") -> dict[str, bool]:
    """Photo names of a crop source → whether the file is present in the installed wheel."""
    if source == "skimage":
        dist, folder, table = SKIMAGE_DIST, SKIMAGE_DIR, dict(SKIMAGE_RGB, **SKIMAGE_GRAY)
    elif source == "sklearn_photos":
        dist, folder, table = SKLEARN_DIST, SKLEARN_PHOTO_DIR, SKLEARN_PHOTOS
    else:
        raise UnknownImageSourceError(
            f"list_photos: {source!r} is not a photo source; valid: ['skimage', 'sklearn_photos']")
    out = {}
    for name, fname in table.items():
        try:
            _locate(dist, f"{folder}/{fname}", source)
            out[name] = True
        except FileNotFoundError:
            out[name] = False
    return out


def load_images(
    source: str,
    *,
    path: str = "",
    size: int | None = None,
    crops_per_image: int = 16,
    names: Sequence[str] | str | None = None,
    side_range: tuple[float, float] = (0.25, 1.0),
    crop_seed: int = 0,
    split: str = "train",
    limit: int | None = None,
    manual_dir: str = "",
) -> ImageSet:
    """Load the candidate images of ``source`` (see the module docstring).

    ``size``, ``crops_per_image``, ``names``, ``side_range``, ``crop_seed``: the photo crop
    sources (``path`` there overrides the folder holding the photo files).  ``path``: the
    folder of ``"folder"`` / ``"imagefolder"``, the digits file of ``"digits"``, the
    ``data_dir`` of the tfds sources.  ``split``, ``limit``, ``manual_dir``: tfds sources
    (``limit`` also keeps the first ``limit`` images of any other source).
    """
    if source not in IMAGE_SOURCES:
        raise UnknownImageSourceError(
            f"unknown image source {source!r}; valid image sources: {list(IMAGE_SOURCES)}")
    if limit is not None:
        _check_size("limit", limit)
    path = os.fspath(path) if path else ""
    if source in ("skimage", "sklearn_photos"):
        out = _load_photo_crops(source, size=size, crops_per_image=crops_per_image, names=names,
                                side_range=side_range, crop_seed=crop_seed, path=path)
    elif source == "digits":
        out = _load_digits(path)
    elif source == "folder":
        out = _load_folder(path)
    elif source == "imagefolder":
        out = _load_imagefolder(path)
    else:
        out = _load_tfds(source, split=split, data_dir=path, manual_dir=manual_dir, limit=limit)
    if limit is not None and len(out) > limit:
        out = _head(out, limit)
    if len(out) == 0:
        raise EmptyFolderError(f"image source {source!r} gave no images")
    return out


def _head(images: ImageSet, n: int) -> ImageSet:
    pixels = images.pixels[:n] if images.pixels is not None else None
    paths = images.paths[:n] if images.paths is not None else None
    labels = images.labels[:n] if images.labels is not None else None
    params = dict(images.params, limit=n)
    return replace(images, ids=images.ids[:n], pixels=pixels, paths=paths, labels=labels, params=params)


# --------------------------------------------------------------------------- selection


def select_images(source_images: ImageSet, n: int, seed: int, *, first_n: bool = False) -> ImageSet:
    """``n`` images of ``source_images``: the first ``n`` of ``default_rng(seed).permutation(N)``
    (or of ``0, 1, 2, ...`` with ``first_n=True``), in that order, pixels read.

    The selection for a smaller ``n`` is a prefix of that for a larger one (same seed).
    The result records ``seed`` and ``pool_size`` for its manifest.
    """
    n = _check_size("n", n)
    total = len(source_images)
    if n > total:
        raise NotEnoughImagesError(
            f"need n={n} images but image source {source_images.source!r} has only {total}; lower n "
            f"(T·batch_size) or load more images (e.g. more crops_per_image or photos)"
        )
    order = np.arange(total) if first_n else np.random.default_rng(seed).permutation(total)
    out = source_images.take(order[:n])
    return replace(out, seed=int(seed), pool_size=total,
                   params=dict(source_images.params, first_n=bool(first_n)))


class Batches(NamedTuple):
    """T fixed batches: ``images_TB...`` (T, B, ...), ``labels_TB`` (T, B) or None, and
    ``index_TB`` (T, B), the positions of the images in the array given to :func:`make_batches`."""

    images_TB: np.ndarray
    labels_TB: np.ndarray | None
    index_TB: np.ndarray


def make_batches(images, labels, T: int, batch_size: int, seed: int | None) -> Batches:
    """Split ``T · batch_size`` of the N given images into T fixed batches of ``batch_size``.

    ``images`` is an array (N, ...) (e.g. preprocessed (N, H, W, C)) or an :class:`ImageSet`;
    ``labels`` int [N] or None.  With a ``seed`` the images are the first T·B of
    ``default_rng(seed).permutation(N)`` (the authors: ``random.sample`` of 800 ImageNet
    indices, batched in that order); with ``seed=None`` the first T·B in the given order
    (use this after :func:`select_images` already chose them, so the manifest's order is
    the batch order).  Batch t is positions ``t·B .. t·B + B - 1`` of that order.
    """
    T = _check_size("T", T)
    batch_size = _check_size("batch_size", batch_size)
    if isinstance(images, ImageSet):
        if labels is None:
            labels = images.labels
        images = images.images_NHWC
    images = np.asarray(images)
    total = int(images.shape[0])
    need = T * batch_size
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape[:1] != (total,):
            raise ImageDataError(f"labels have shape {labels.shape} but there are {total} images; "
                                 f"give one label per image")
    if need > total:
        raise NotEnoughImagesError(
            f"T·batch_size = {T}·{batch_size} = {need} images needed but only {total} given; lower T "
            f"or batch_size, or load more images"
        )
    order = np.arange(total) if seed is None else np.random.default_rng(seed).permutation(total)
    index_TB = order[:need].reshape(T, batch_size).astype(np.int64)
    images_TB = images[index_TB]
    labels_TB = None if labels is None else labels[index_TB].astype(np.int64)
    return Batches(images_TB, labels_TB, index_TB)


# --------------------------------------------------------------------------- preprocessing


def _as_list(images) -> tuple[list[np.ndarray], list[str]]:
    if isinstance(images, ImageSet):
        return images.image_list(), list(images.ids)
    if isinstance(images, np.ndarray):
        if images.ndim == 3:  # (N, H, W): grayscale without a channel axis
            images = images[..., None]
        if images.ndim != 4:
            raise ImageDataError(f"images must have shape (N, H, W, C), got {images.shape}")
        return list(images), [f"#{i}" for i in range(images.shape[0])]
    out = []
    for im in images:
        im = np.asarray(im)
        out.append(im[..., None] if im.ndim == 2 else im)
    return out, [f"#{i}" for i in range(len(out))]


def match_channels(images, channels: int, *, gray_to_rgb: bool = False, ids=None) -> list[np.ndarray]:
    """Images with ``channels`` channels; grayscale → RGB only when ``gray_to_rgb``.

    Raises :class:`GrayscaleImageError` for grayscale images into an RGB model (without
    ``gray_to_rgb``) and :class:`ChannelMismatchError` for other mismatches.
    """
    ims, default_ids = _as_list(images)
    ids = list(ids) if ids is not None else default_ids
    if channels not in (1, 3):
        raise ImageDataError(f"channels must be 1 or 3, got {channels!r}")
    out = []
    for im, i in zip(ims, ids):
        c = im.shape[2]
        if c == channels:
            out.append(im)
        elif c == 1 and channels == 3:
            if not gray_to_rgb:
                n_gray = sum(1 for m in ims if m.shape[2] == 1)
                raise GrayscaleImageError(
                    f"{n_gray} of the {len(ims)} images (e.g. {i!r}) are grayscale (1 channel) but the "
                    f"model takes RGB (3 channels); pass gray_to_rgb=True to repeat the gray channel, "
                    f"or use an RGB image source"
                )
            out.append(np.repeat(im, 3, axis=2))
        else:
            raise ChannelMismatchError(
                f"image {i!r} has {c} channels but the model takes {channels}; valid: "
                f"{'grayscale (1-channel) images' if channels == 1 else 'RGB or grayscale images'}"
            )
    return out


def _ids_of(images) -> list[str]:
    return list(images.ids) if isinstance(images, ImageSet) else None


def resize_images(images, size: int, *, channels: int | None = 3, gray_to_rgb: bool = False,
                  allow_upscale: bool = False) -> np.ndarray:
    """Plain resize (aspect ratio not kept) to ``size`` × ``size`` with Pillow's bilinear filter,
    as the Image GPT image processor does; uint8 (N, size, size, C).

    ``channels`` (1, 3 or None = keep) is enforced with :func:`match_channels`.  An image
    smaller than ``size`` on either side raises :class:`ImageTooSmallError` unless
    ``allow_upscale``.
    """
    size = _check_size("size", size)
    ids = _ids_of(images)
    ims, default_ids = _as_list(images)
    ids = ids or default_ids
    if channels is not None:
        ims = match_channels(ims, channels, gray_to_rgb=gray_to_rgb, ids=ids)
    out = []
    for im, i in zip(ims, ids):
        h, w = im.shape[:2]
        if min(h, w) < size and not allow_upscale:
            raise ImageTooSmallError(
                f"image {i!r} is {h}×{w} pixels, smaller than the model's resolution {size}×{size}; "
                f"use images of at least {size}×{size}, a model of lower resolution, or "
                f"allow_upscale=True"
            )
        out.append(_resize_pil(np.ascontiguousarray(im, dtype=np.uint8), size, size))
    if not out:
        return np.zeros((0, size, size, channels or 3), np.uint8)
    if len({im.shape[2] for im in out}) > 1:
        raise ChannelMismatchError("images mix 1 and 3 channels; pass channels=1 or channels=3")
    return np.stack(out)


def resize_shorter(image_HWC: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is ``size`` (longer side ``int(size · long / short)``, as
    torchvision's ``Resize(size)``), Pillow bilinear; uint8 (H', W', C)."""
    h, w = image_HWC.shape[:2]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    return _resize_pil(np.ascontiguousarray(image_HWC, dtype=np.uint8), new_h, new_w)


def center_crop(image_HWC: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` × ``size`` window (torchvision's rounding of the offsets)."""
    h, w = image_HWC.shape[:2]
    if h < size or w < size:
        raise ImageTooSmallError(f"cannot centre-crop {size}×{size} from an image of {h}×{w}; "
                                 f"resize it to at least {size} on both sides first")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return image_HWC[top:top + size, left:left + size]


def normalize(images_NHWC: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """uint8 → float32 ``(x / 255 - mean) / std`` per channel."""
    x = np.asarray(images_NHWC, dtype=np.float32) / np.float32(255.0)
    return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def classifier_inputs(images, *, resize: int = 256, crop: int = 224, mean=IMAGENET_MEAN,
                      std=IMAGENET_STD, gray_to_rgb: bool = False,
                      allow_upscale: bool = False) -> np.ndarray:
    """ImageNet classifier inputs: shorter side → ``resize``, centre crop ``crop``, scale to
    [0, 1], normalise with ``mean`` / ``std``; float32 (N, crop, crop, 3) (NHWC).

    This is torchvision's ``VGG19_Weights.DEFAULT.transforms()`` (and ViT-B/32's) on an
    RGB image.  Grayscale images need ``gray_to_rgb=True`` (torchvision's ``ImageFolder``
    loader converts every image to RGB: pass it to match the authors).  An image whose
    shorter side is below ``crop`` raises :class:`ImageTooSmallError` unless
    ``allow_upscale`` (torchvision upsamples such images silently).
    """
    resize = _check_size("resize", resize)
    crop = _check_size("crop", crop)
    if crop > resize:
        raise ImageDataError(f"crop={crop} must not exceed resize={resize}")
    ids = _ids_of(images)
    ims, default_ids = _as_list(images)
    ids = ids or default_ids
    ims = match_channels(ims, 3, gray_to_rgb=gray_to_rgb, ids=ids)
    out = np.zeros((len(ims), crop, crop, 3), np.uint8)
    for k, (im, i) in enumerate(zip(ims, ids)):
        h, w = im.shape[:2]
        if min(h, w) < crop and not allow_upscale:
            raise ImageTooSmallError(
                f"image {i!r} is {h}×{w} pixels, smaller than the model's resolution {crop}×{crop}; "
                f"use larger images or allow_upscale=True (torchvision upsamples them)"
            )
        out[k] = center_crop(resize_shorter(im, resize), crop)
    return normalize(out, mean, std)


def to_signed_unit(images_NHWC: np.ndarray) -> np.ndarray:
    """uint8 → float64 in [-1, 1] (``x / 127.5 - 1``, Image GPT's pixel scale)."""
    return np.asarray(images_NHWC, dtype=np.float64) / 127.5 - 1.0


# --------------------------------------------------------------------------- colour clusters


def _pixels_P3(images_NHWC) -> np.ndarray:
    arr = np.asarray(images_NHWC)
    if arr.ndim < 2 or arr.shape[-1] != 3:
        raise GrayscaleImageError(
            f"colour quantisation needs RGB images (last axis 3), got shape {arr.shape}; convert "
            f"grayscale images with resize_images(..., channels=3, gray_to_rgb=True)"
        )
    if arr.dtype == np.uint8:
        return to_signed_unit(arr.reshape(-1, 3))
    if not np.issubdtype(arr.dtype, np.floating):
        raise ImageDataError(f"images must be uint8 (0..255) or float in [-1, 1], got dtype {arr.dtype}")
    pix = arr.reshape(-1, 3).astype(np.float64)
    if pix.size and (pix.min() < -1.0 - 1e-6 or pix.max() > 1.0 + 1e-6):
        raise ImageDataError(
            f"float images must be in Image GPT's [-1, 1] scale, got values in "
            f"[{pix.min():.3g}, {pix.max():.3g}]; pass uint8 images (0..255) instead"
        )
    return pix


def _check_clusters(clusters_K3, where: str = "clusters") -> np.ndarray:
    c = np.asarray(clusters_K3, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] < 2:
        raise ClusterFileError(
            f"{where} has shape {c.shape}; colour clusters must be a (K, 3) array with K >= 2 (the "
            f"pretrained Image GPT checkpoints use 512 × 3)"
        )
    if not np.all(np.isfinite(c)):
        raise ClusterFileError(f"{where} contains NaN or infinite values; clusters must be finite")
    return c


def quantize(images_NHWC, clusters_K3, *, chunk: int = 32768) -> np.ndarray:
    """Image GPT colour quantisation: each pixel (in [-1, 1]) → the id of its nearest cluster.

    ``images_NHWC`` uint8 (scaled by ``x / 127.5 - 1``) or float already in [-1, 1];
    ``clusters_K3`` in the [-1, 1] scale.  Squared Euclidean distance, ties → the lowest id
    (argmin), computed as ``|p|² - 2 p·c + |c|²`` in float64 (transformers does the same in
    float32).  Returns int32 (N, H·W), pixels in row-major order.
    """
    clusters = _check_clusters(clusters_K3)
    arr = np.asarray(images_NHWC)
    if arr.ndim != 4:
        raise ImageDataError(f"images must have shape (N, H, W, 3), got {arr.shape}")
    n, h, w = arr.shape[:3]
    pix_P3 = _pixels_P3(arr)
    c2_K = np.sum(clusters * clusters, axis=1)
    out_P = np.empty(pix_P3.shape[0], dtype=np.int32)
    for s in range(0, pix_P3.shape[0], chunk):
        p = pix_P3[s:s + chunk]
        d_PK = np.sum(p * p, axis=1)[:, None] - 2.0 * (p @ clusters.T) + c2_K[None, :]
        out_P[s:s + chunk] = np.argmin(d_PK, axis=1)
    return out_P.reshape(n, h * w)


def dequantize(tokens_NL, clusters_K3, size: int | None = None) -> np.ndarray:
    """Cluster ids back to uint8 RGB images (N, size, size, 3); ``size`` defaults to √L."""
    clusters = _check_clusters(clusters_K3)
    tokens = np.asarray(tokens_NL)
    n, length = tokens.shape
    side = int(round(np.sqrt(length))) if size is None else int(size)
    if side * side != length:
        raise ImageDataError(f"{length} tokens per image is not size² for size={side}")
    rgb = np.round((clusters[tokens] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return rgb.reshape(n, side, side, 3)


def load_clusters(path, *, expected_k: int | None = None) -> np.ndarray:
    """Colour clusters float32 (K, 3) from an HF Image GPT image-processor config (a JSON file
    with a ``"clusters"`` field, or a folder holding ``preprocessor_config.json``) or a ``.npy``.

    Raises :class:`ClusterFileError` for a missing field, a wrong shape (or K ≠
    ``expected_k``), non-finite values or values outside [-1, 1].
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "preprocessor_config.json"
    if not p.is_file():
        raise FileNotFoundError(f"colour-cluster file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            raw = np.load(p, allow_pickle=False)
        except Exception as e:
            raise ClusterFileError(f"cannot read colour-cluster file {str(p)!r}: {type(e).__name__}: "
                                   f"{_one_line(e)}; valid: a .npy array of shape (K, 3)") from None
    elif suffix == ".json":
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ClusterFileError(f"colour-cluster file {str(p)!r} is not valid JSON ({_one_line(e)}); "
                                   f"valid: an Image GPT preprocessor_config.json") from None
        if not isinstance(obj, dict) or "clusters" not in obj:
            fields = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ClusterFileError(f"colour-cluster file {str(p)!r} has no 'clusters' field (fields: "
                                   f"{fields}); valid: an Image GPT preprocessor_config.json")
        try:
            raw = np.asarray(obj["clusters"], dtype=np.float64)
        except (TypeError, ValueError):
            raise ClusterFileError(f"the 'clusters' field of {str(p)!r} is not a numeric (K, 3) "
                                   f"array") from None
    else:
        raise ClusterFileError(f"colour-cluster file {str(p)!r} has suffix {suffix!r}; valid: .json "
                               f"(Image GPT preprocessor config) or .npy")
    c = _check_clusters(raw, where=f"colour-cluster file {str(p)!r}")
    if expected_k is not None and c.shape[0] != expected_k:
        raise ClusterFileError(f"colour-cluster file {str(p)!r} has shape {c.shape}; the model needs "
                               f"({expected_k}, 3)")
    if c.min() < -1.0 - 1e-6 or c.max() > 1.0 + 1e-6:
        raise ClusterFileError(
            f"colour-cluster file {str(p)!r} has values in [{c.min():.3g}, {c.max():.3g}]; clusters "
            f"must be in Image GPT's [-1, 1] pixel scale"
        )
    return c.astype(np.float32)


def kmeans_clusters(images, K: int, seed: int, *, n_pixels: int = 65536,
                    minibatch: bool = True) -> np.ndarray:
    """K colour clusters float32 (K, 3) in [-1, 1] from k-means on sampled pixels.

    For from-scratch Image GPT runs: ``n_pixels`` pixels are drawn without replacement
    (all of them when there are fewer) with ``default_rng(seed)``, scaled to [-1, 1], and
    clustered by scikit-learn's ``MiniBatchKMeans`` (or ``KMeans`` with
    ``minibatch=False``) with ``random_state=seed``.  Needs RGB images and at least K
    distinct colours among the sampled pixels.
    """
    K = _check_size("K", K)
    if K < 2:
        raise ImageDataError(f"K must be at least 2, got {K}")
    n_pixels = _check_size("n_pixels", n_pixels)
    if isinstance(images, ImageSet):
        images = images.images_NHWC
    elif not isinstance(images, np.ndarray):
        images = np.stack([np.asarray(im) for im in images])
    pix_P3 = _pixels_P3(images)
    rng = np.random.default_rng(seed)
    if pix_P3.shape[0] > n_pixels:
        pix_P3 = pix_P3[np.sort(rng.choice(pix_P3.shape[0], size=n_pixels, replace=False))]
    n_distinct = len(np.unique(pix_P3, axis=0))
    if n_distinct < K:
        raise ImageDataError(
            f"only {n_distinct} distinct colours among the {pix_P3.shape[0]} sampled pixels, fewer than "
            f"K={K} clusters; lower K or use more (or more colourful) images"
        )
    try:
        from sklearn.cluster import KMeans, MiniBatchKMeans
    except ImportError as e:
        raise ImportError(f"kmeans_clusters needs scikit-learn: pip install 'recovery_jax[vision]' "
                          f"(import failed: {e})") from None
    if minibatch:
        km = MiniBatchKMeans(n_clusters=K, random_state=int(seed), n_init=3,
                             batch_size=min(4096, pix_P3.shape[0]))
    else:
        km = KMeans(n_clusters=K, random_state=int(seed), n_init=1)
    km.fit(pix_P3)
    return np.clip(km.cluster_centers_, -1.0, 1.0).astype(np.float32)
