"""Image sources, seeded selection, manifest, preprocessing and colour quantisation
(recovery_jax.data.images)."""

import gzip
import hashlib
import importlib.metadata
import json
import sys
import types

import numpy as np
import pytest
from PIL import Image

from recovery_jax.data import images as im


def _installed(dist):
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_skimage = pytest.mark.skipif(
    not _installed("scikit-image"), reason="scikit-image not installed: pip install 'recovery_jax[vision]'")
needs_sklearn = pytest.mark.skipif(
    not _installed("scikit-learn"), reason="scikit-learn not installed: pip install 'recovery_jax[vision]'")


@pytest.fixture(scope="module")
def sk32():
    return im.load_images("skimage", size=32, crops_per_image=4)


@pytest.fixture(scope="module")
def digits():
    return im.load_images("digits")


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def _rgb(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- offline sources


@needs_skimage
def test_skimage_crops(sk32):
    names = list(im.SKIMAGE_RGB)
    assert len(sk32) == 4 * len(names)
    x = sk32.images_NHWC
    assert x.shape == (len(sk32), 32, 32, 3) and x.dtype == np.uint8
    assert sk32.labels is None and sk32.source == "skimage"
    assert [i.split("@")[0] for i in sk32.ids] == [n for n in names for _ in range(4)]
    assert len(set(sk32.ids)) == len(sk32.ids)
    assert sk32.params["dist_version"] == importlib.metadata.version("scikit-image")
    assert all(im.list_photos("skimage").values())


@needs_skimage
def test_crop_ids_name_the_pixels(sk32):
    """Each id 'name@x,y,s' re-cuts exactly its crop from the photo in the wheel."""
    for k in (0, 5, len(sk32) - 1):
        name, pos = sk32.ids[k].split("@")
        x, y, s = map(int, pos.split(","))
        photo = im.read_image(im._locate("scikit-image", f"skimage/data/{im.SKIMAGE_RGB[name]}", "skimage"))
        h, w = photo.shape[:2]
        assert 0 <= x <= w - s and 0 <= y <= h - s and 32 <= s <= min(h, w)
        crop = Image.fromarray(photo[y:y + s, x:x + s]).resize((32, 32), Image.BILINEAR)
        np.testing.assert_array_equal(np.asarray(crop), sk32.images_NHWC[k])


@needs_skimage
@pytest.mark.parametrize("size", [8, 48])
def test_crops_have_requested_shape_and_are_seeded(size):
    a = im.load_images("skimage", size=size, crops_per_image=2, names=["chelsea", "coffee"], crop_seed=3)
    b = im.load_images("skimage", size=size, crops_per_image=2, names=["chelsea", "coffee"], crop_seed=3)
    c = im.load_images("skimage", size=size, crops_per_image=2, names=["chelsea", "coffee"], crop_seed=4)
    assert a.images_NHWC.shape == (4, size, size, 3)
    assert a.ids == b.ids and np.array_equal(a.images_NHWC, b.images_NHWC)
    assert a.ids != c.ids
    # a photo's crops depend only on its name and the seed, not on the other photos chosen
    only = im.load_images("skimage", size=size, crops_per_image=2, names=["coffee"], crop_seed=3)
    assert only.ids == a.ids[2:]


@needs_skimage
def test_skimage_grayscale_photos():
    g = im.load_images("skimage", size=16, crops_per_image=1, names="gray")
    assert g.images_NHWC.shape == (len(im.SKIMAGE_GRAY), 16, 16, 1)
    with pytest.raises(im.ChannelMismatchError, match="mix RGB and grayscale"):
        im.load_images("skimage", size=16, crops_per_image=1, names=["camera", "astronaut"])
    with pytest.raises(im.ImageDataError, match=r"unknown photo name\(s\) \['nope'\].*astronaut"):
        im.load_images("skimage", size=16, names=["nope"])


@needs_sklearn
def test_sklearn_photos():
    s = im.load_images("sklearn_photos", size=64, crops_per_image=3)
    assert s.images_NHWC.shape == (6, 64, 64, 3)
    assert [i.split("@")[0] for i in s.ids] == ["china"] * 3 + ["flower"] * 3
    assert s.params["dist"] == "scikit-learn"


@needs_sklearn
def test_digits(digits):
    x = digits.images_NHWC
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.uint8
    assert len(digits) == 1797 and digits.ids[0] == "digits:0"
    assert sorted(set(digits.labels.tolist())) == list(range(10))
    assert digits.class_names == [str(k) for k in range(10)]
    assert x.min() == 0 and x.max() == 255
    # the first row of the CSV, scaled 0..16 -> 0..255
    path = im._locate("scikit-learn", im.DIGITS_FILE, "digits")
    first = np.array(gzip.decompress(path.read_bytes()).decode().splitlines()[0].split(","), float)
    np.testing.assert_array_equal(x[0, :, :, 0], np.round(first[:64] * 255 / 16).reshape(8, 8))
    assert digits.labels[0] == int(first[64])


# --------------------------------------------------------------------------- selection, manifest


@needs_sklearn
def test_select_images_seeded(digits):
    a = im.select_images(digits, 50, seed=1)
    b = im.select_images(digits, 50, seed=1)
    c = im.select_images(digits, 50, seed=2)
    assert a.ids == b.ids and np.array_equal(a.images_NHWC, b.images_NHWC)
    assert a.ids != c.ids
    small = im.select_images(digits, 20, seed=1)
    assert small.ids == a.ids[:20]  # prefix property
    idx = [int(i.split(":")[1]) for i in a.ids]
    np.testing.assert_array_equal(a.labels, digits.labels[idx])
    np.testing.assert_array_equal(a.images_NHWC, digits.images_NHWC[idx])
    assert a.seed == 1 and a.pool_size == 1797
    first = im.select_images(digits, 5, seed=9, first_n=True)
    assert first.ids == [f"digits:{i}" for i in range(5)]


@needs_sklearn
def test_manifest_hashes_match_pixels(digits):
    sel = im.select_images(digits, 12, seed=0)
    m = json.loads(json.dumps(sel.to_json()))
    assert m["source"] == "digits" and m["seed"] == 0 and m["n"] == 12 and m["pool_size"] == 1797
    assert m["ids"] == sel.ids and m["labels"] == sel.labels.tolist()
    assert m["shapes"] == [[8, 8, 1]] * 12
    for k, h in enumerate(m["sha256"]):
        assert h == hashlib.sha256(sel.images_NHWC[k].tobytes()).hexdigest()
    assert m["pixels_sha256"] == im.select_images(digits, 12, seed=0).to_json()["pixels_sha256"]
    assert m["pixels_sha256"] != im.select_images(digits, 12, seed=1).to_json()["pixels_sha256"]


def test_make_batches():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 4, 4, 3), dtype=np.uint8)
    y = np.arange(40) % 7
    b = im.make_batches(x, y, T=3, batch_size=5, seed=11)
    assert b.images_TB.shape == (3, 5, 4, 4, 3) and b.labels_TB.shape == (3, 5)
    assert len(set(b.index_TB.ravel().tolist())) == 15
    np.testing.assert_array_equal(b.images_TB, x[b.index_TB])
    np.testing.assert_array_equal(b.labels_TB, y[b.index_TB])
    np.testing.assert_array_equal(b.index_TB, im.make_batches(x, y, 3, 5, seed=11).index_TB)
    assert not np.array_equal(b.index_TB, im.make_batches(x, y, 3, 5, seed=12).index_TB)
    kept = im.make_batches(x, None, 2, 4, seed=None)
    np.testing.assert_array_equal(kept.index_TB, np.arange(8).reshape(2, 4))
    assert kept.labels_TB is None


def test_fewer_images_than_T_times_batch():
    x = np.zeros((30, 2, 2, 3), np.uint8)
    with pytest.raises(im.NotEnoughImagesError, match=r"T·batch_size = 25·32 = 800 images needed but only 30"):
        im.make_batches(x, None, T=25, batch_size=32, seed=0)
    s = im.ImageSet(ids=[str(i) for i in range(30)], source="custom", pixels=x)
    with pytest.raises(im.NotEnoughImagesError, match=r"need n=800 images but image source 'custom' has only 30"):
        im.select_images(s, 800, seed=0)


# --------------------------------------------------------------------------- folders


def test_folder_source(tmp_path):
    rng = np.random.default_rng(0)
    _png(tmp_path / "b.png", _rgb(rng, 5, 6))
    _png(tmp_path / "a.PNG", rng.integers(0, 256, (4, 4), dtype=np.uint8))  # grayscale
    _png(tmp_path / "sub" / "c.png", rng.integers(0, 256, (3, 3, 4), dtype=np.uint8))  # RGBA
    Image.fromarray(_rgb(rng, 7, 7)).save(tmp_path / "d.bmp")
    (tmp_path / "notes.txt").write_text("not an image")
    s = im.load_images("folder", path=tmp_path)
    assert s.ids == ["a.PNG", "b.png", "d.bmp", "sub/c.png"]
    assert s.labels is None and s.pixels is None  # lazy
    shapes = [x.shape for x in s.image_list()]
    assert shapes == [(4, 4, 1), (5, 6, 3), (7, 7, 3), (3, 3, 3)]
    np.testing.assert_array_equal(s.image(1), np.asarray(Image.open(tmp_path / "b.png")))
    with pytest.raises(im.ImageDataError, match="different shapes"):
        s.images_NHWC
    sel = im.select_images(s, 2, seed=0)
    assert sel.pixels is not None and len(sel.to_json()["sha256"]) == 2


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(im.EmptyFolderError, match=r"has no image files .*\.png"):
        im.load_images("folder", path=tmp_path)


def test_unreadable_image_is_named(tmp_path):
    _png(tmp_path / "good.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    s = im.load_images("folder", path=tmp_path)
    with pytest.raises(im.UnreadableImageError, match=r"cannot read image file '.*broken\.jpg'"):
        s.take([0, 1])


def _class_tree(root, rng):
    for cls, n in (("zebra", 2), ("apple", 3), ("mango", 1)):
        for k in range(n):
            _png(root / cls / f"{k}.png", _rgb(rng, 6, 6))
    _png(root / "mango" / "nested" / "x.png", _rgb(rng, 6, 6))
    _png(root / "stray.png", _rgb(rng, 6, 6))  # not in a class folder: ignored


def test_imagefolder(tmp_path):
    _class_tree(tmp_path, np.random.default_rng(1))
    s = im.load_images("imagefolder", path=tmp_path)
    assert s.class_names == ["apple", "mango", "zebra"]
    assert s.ids == ["apple/0.png", "apple/1.png", "apple/2.png", "mango/0.png", "mango/nested/x.png",
                     "zebra/0.png", "zebra/1.png"]
    assert s.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    sel = im.select_images(s, 4, seed=3)
    for i, lab in zip(sel.ids, sel.labels):
        assert s.class_names[lab] == i.split("/")[0]
    assert sel.images_NHWC.shape == (4, 6, 6, 3)


def test_imagefolder_bad_layouts(tmp_path):
    rng = np.random.default_rng(2)
    one = tmp_path / "one"
    _png(one / "cats" / "a.png", _rgb(rng, 4, 4))
    with pytest.raises(im.ClassLayoutError, match=r"single class folder 'cats'.*at least 2 classes"):
        im.load_images("imagefolder", path=one)
    flat = tmp_path / "flat"
    _png(flat / "a.png", _rgb(rng, 4, 4))
    with pytest.raises(im.ClassLayoutError, match="has no class sub-folders"):
        im.load_images("imagefolder", path=flat)
    none = tmp_path / "none"
    (none / "a").mkdir(parents=True)
    (none / "b").mkdir()
    with pytest.raises(im.ClassLayoutError, match=r"no image files in its class folders \['a', 'b'\]"):
        im.load_images("imagefolder", path=none)
    part = tmp_path / "part"
    _png(part / "a" / "x.png", _rgb(rng, 4, 4))
    (part / "b").mkdir()
    with pytest.raises(im.ClassLayoutError, match=r"class folder\(s\) \['b'\].*hold no image files"):
        im.load_images("imagefolder", path=part)


# --------------------------------------------------------------------------- preprocessing


def test_resize_images_and_channels():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 40, 50, 3), dtype=np.uint8)
    out = im.resize_images(x, 32)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], np.asarray(Image.fromarray(x[1]).resize((32, 32), Image.BILINEAR)))
    with pytest.raises(im.ImageTooSmallError, match=r"image '#0' is 40×50 pixels, smaller than the model's resolution 64×64"):
        im.resize_images(x, 64)
    assert im.resize_images(x, 64, allow_upscale=True).shape == (3, 64, 64, 3)
    gray = rng.integers(0, 256, size=(2, 8, 8, 1), dtype=np.uint8)
    with pytest.raises(im.GrayscaleImageError, match=r"2 of the 2 images .* grayscale .*gray_to_rgb=True"):
        im.resize_images(gray, 8)
    rgb = im.resize_images(gray, 8, gray_to_rgb=True)
    assert rgb.shape == (2, 8, 8, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert im.resize_images(gray, 8, channels=1).shape == (2, 8, 8, 1)


def test_too_small_names_the_image_id(tmp_path):
    s = im.ImageSet(ids=["tiny.png"], source="folder", pixels=np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(im.ImageTooSmallError, match=r"'tiny.png' is 8×8 .* 224×224"):
        im.classifier_inputs(s)


def test_classifier_inputs():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    r = im.resize_shorter(a, 256)
    assert r.shape == (256, 341, 3)
    assert im.resize_shorter(a.transpose(1, 0, 2), 256).shape == (341, 256, 3)
    c = im.center_crop(r, 224)
    np.testing.assert_array_equal(c, r[16:240, 58:282])  # round((341-224)/2) = 58
    flat = np.full((1, 256, 256, 3), 128, np.uint8)
    out = im.classifier_inputs([a, flat[0]])
    assert out.shape == (2, 224, 224, 3) and out.dtype == np.float32
    want = (128 / 255 - np.array(im.IMAGENET_MEAN)) / np.array(im.IMAGENET_STD)
    np.testing.assert_allclose(out[1, 100, 100], want, rtol=1e-5)
    np.testing.assert_allclose(out[0], im.normalize(c[None])[0], rtol=1e-6)
    with pytest.raises(im.GrayscaleImageError):
        im.classifier_inputs(np.zeros((1, 256, 256, 1), np.uint8))
    assert im.classifier_inputs(np.zeros((1, 256, 256, 1), np.uint8), gray_to_rgb=True).shape == (1, 224, 224, 3)


# --------------------------------------------------------------------------- colour clusters


def _brute_force(images, clusters):
    p = images.reshape(-1, 3).astype(np.float64) / 127.5 - 1.0
    d = ((p[:, None, :] - clusters[None, :, :].astype(np.float64)) ** 2).sum(-1)
    return d


def test_quantize_matches_brute_force():
    rng = np.random.default_rng(0)
    clusters = rng.uniform(-1, 1, size=(64, 3)).astype(np.float32)
    x = rng.integers(0, 256, size=(3, 9, 7, 3), dtype=np.uint8)
    tok = im.quantize(x, clusters, chunk=50)  # several chunks
    assert tok.shape == (3, 63) and tok.dtype == np.int32
    d = _brute_force(x, clusters)
    ref = d.argmin(1)
    chosen = d[np.arange(len(ref)), tok.ravel()]
    np.testing.assert_allclose(chosen, d.min(1), atol=1e-12)
    assert (tok.ravel() == ref).mean() > 0.999
    # float input in [-1, 1] gives the same ids
    np.testing.assert_array_equal(im.quantize(x / 127.5 - 1.0, clusters), tok)
    # the cluster colours themselves quantise to themselves and round-trip
    exact = np.round((clusters + 1) * 127.5).astype(np.uint8).reshape(1, 8, 8, 3)
    back = im.dequantize(im.quantize(exact, exact.reshape(-1, 3) / 127.5 - 1.0), exact.reshape(-1, 3) / 127.5 - 1.0)
    np.testing.assert_array_equal(back, exact)


def test_quantize_rejects_grayscale():
    with pytest.raises(im.GrayscaleImageError, match="needs RGB images"):
        im.quantize(np.zeros((1, 4, 4, 1), np.uint8), np.zeros((4, 3)))


@needs_sklearn
def test_kmeans_clusters():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    c = im.kmeans_clusters(x, 8, seed=0, n_pixels=500)
    assert c.shape == (8, 3) and c.dtype == np.float32
    assert c.min() >= -1 and c.max() <= 1
    np.testing.assert_array_equal(c, im.kmeans_clusters(x, 8, seed=0, n_pixels=500))
    assert im.quantize(x, c).max() < 8
    with pytest.raises(im.ImageDataError, match=r"only 2 distinct colours .* fewer than K=8"):
        two = np.zeros((1, 4, 4, 3), np.uint8)
        two[0, :2] = 255
        im.kmeans_clusters(two, 8, seed=0)


def test_load_clusters(tmp_path):
    rng = np.random.default_rng(0)
    c = rng.uniform(-1, 1, size=(512, 3))
    cfg = tmp_path / "hf" / "preprocessor_config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"image_processor_type": "ImageGPTImageProcessor", "clusters": c.tolist()}))
    got = im.load_clusters(cfg.parent, expected_k=512)
    assert got.shape == (512, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, c, rtol=1e-6)
    np.save(tmp_path / "c.npy", c[:16])
    assert im.load_clusters(tmp_path / "c.npy").shape == (16, 3)

    np.save(tmp_path / "bad.npy", np.zeros((512, 4)))
    with pytest.raises(im.ClusterFileError, match=r"has shape \(512, 4\); colour clusters must be a \(K, 3\)"):
        im.load_clusters(tmp_path / "bad.npy")
    with pytest.raises(im.ClusterFileError, match=r"has shape \(16, 3\); the model needs \(512, 3\)"):
        im.load_clusters(tmp_path / "c.npy", expected_k=512)
    (tmp_path / "nofield.json").write_text(json.dumps({"size": 32}))
    with pytest.raises(im.ClusterFileError, match=r"no 'clusters' field \(fields: \['size'\]\)"):
        im.load_clusters(tmp_path / "nofield.json")
    np.save(tmp_path / "scale.npy", c * 255)
    with pytest.raises(im.ClusterFileError, match=r"\[-1, 1\] pixel scale"):
        im.load_clusters(tmp_path / "scale.npy")
    (tmp_path / "c.txt").write_text("1 2 3")
    with pytest.raises(im.ClusterFileError, match=r"suffix '.txt'; valid: .json"):
        im.load_clusters(tmp_path / "c.txt")


# --------------------------------------------------------------------------- errors


def test_unknown_source_lists_valid_ones():
    with pytest.raises(im.UnknownImageSourceError, match=r"unknown image source 'mnist'; valid image sources: \['skimage'"):
        im.load_images("mnist")


@needs_skimage
def test_photo_smaller_than_crop_resolution():
    with pytest.raises(im.ImageTooSmallError, match=r"photo 'chelsea' is 300×451 pixels, smaller than .* size=512; use size <= 300"):
        im.load_images("skimage", size=512, names=["chelsea"])
    with pytest.raises(im.ImageDataError, match="needs size="):
        im.load_images("skimage")


def test_errors_are_value_errors_with_one_line_messages(tmp_path):
    cases = [
        lambda: im.load_images("nope"),
        lambda: im.load_images("folder", path=tmp_path),
        lambda: im.make_batches(np.zeros((3, 2, 2, 3)), None, 2, 2, 0),
        lambda: im.resize_images(np.zeros((1, 2, 2, 1), np.uint8), 2),
    ]
    for case in cases:
        with pytest.raises(ValueError) as e:
            case()
        assert isinstance(e.value, im.ImageDataError)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- tfds


def test_tfds_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(ImportError, match=r"image source 'cifar10' needs TensorFlow Datasets: pip install 'recovery_jax\[tfds\]'"):
        im.load_images("cifar10")


class _DownloadConfig:
    def __init__(self, manual_dir=None):
        self.manual_dir = manual_dir


def _fake_tfds(load):
    mod = types.ModuleType("tensorflow_datasets")
    mod.load = load
    mod.as_numpy = lambda ds: iter(ds)
    mod.download = types.SimpleNamespace(DownloadConfig=_DownloadConfig)
    return mod


def _info(names):
    return types.SimpleNamespace(features={"label": types.SimpleNamespace(names=names)}, version="3.0.2")


def test_cifar_with_fake_tfds(monkeypatch):
    calls = []
    rng = np.random.default_rng(0)
    examples = [{"image": _rgb(rng, 32, 32), "label": k % 3, "id": f"train_{k}".encode()} for k in range(5)]

    def load(name, split, data_dir, shuffle_files, with_info, **kw):
        calls.append((name, split, data_dir, shuffle_files, with_info, kw))
        return examples, _info(["airplane", "automobile", "bird"])

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(load))
    s = im.load_images("cifar10", split="test", limit=5, path="/data/tfds")
    assert calls == [("cifar10", "test[:5]", "/data/tfds", False, True, {})]
    assert s.images_NHWC.shape == (5, 32, 32, 3)
    assert s.ids == [f"train_{k}" for k in range(5)] and s.labels.tolist() == [0, 1, 2, 0, 1]
    assert s.class_names == ["airplane", "automobile", "bird"]
    assert s.params["tfds_name"] == "cifar10" and s.params["tfds_version"] == "3.0.2"
    np.testing.assert_array_equal(s.images_NHWC[2], examples[2]["image"])


def test_imagenet_with_fake_tfds(monkeypatch):
    calls = []
    rng = np.random.default_rng(1)
    examples = [{"image": _rgb(rng, 20 + k, 30), "label": k, "file_name": f"n0{k}_1.JPEG"} for k in range(3)]

    def load(name, split, data_dir, shuffle_files, with_info, **kw):
        calls.append((name, split, kw))
        return examples, _info(["tench", "goldfish", "shark"])

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(load))
    s = im.load_images("imagenet", manual_dir="/dl/imagenet")
    name, split, kw = calls[0]
    assert (name, split) == ("imagenet2012", "train")
    assert kw["download_and_prepare_kwargs"]["download_config"].manual_dir == "/dl/imagenet"
    assert isinstance(s.pixels, list) and [x.shape[0] for x in s.pixels] == [20, 21, 22]
    assert s.ids == ["n00_1.JPEG", "n01_1.JPEG", "n02_1.JPEG"]
    out = im.classifier_inputs(s, resize=24, crop=16)
    assert out.shape == (3, 16, 16, 3)


def test_imagenet_download_failure(monkeypatch):
    def load(*a, **kw):
        raise AssertionError("Manual directory /x does not exist")

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(load))
    with pytest.raises(RuntimeError, match=r"could not load imagenet2012 .* manual_dir="):
        im.load_images("imagenet")
