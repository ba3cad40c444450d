"""Input pipelines and image grids, on small synthetic data written to tmp_path."""

import gzip
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pga_tf import data, images
from tests.helpers import idx_bytes, write_idx


# ----------------------------------------------------------------------------------- helpers
def random_uint8(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def mnist_dir(tmp_path, n_train=10, n_test=4, gz=True) -> tuple[str, np.ndarray, np.ndarray]:
    train, test = random_uint8((n_train, 28, 28), 1), random_uint8((n_test, 28, 28), 2)
    # Pin the extremes so the scaling check sees exactly 0 and 255.
    train[0, 0, 0], train[0, 0, 1] = 0, 255
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", train, gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.arange(n_train, dtype=np.uint8), gz)
    return str(tmp_path), train, test


def write_pngs(directory, arrays) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        p = os.path.join(directory, f"img_{i:03d}.png")
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(p)
        paths.append(p)
    return paths


def scaled(u8: np.ndarray) -> np.ndarray:
    """The expected pipeline output, computed in float32 as TF does, so comparisons are exact."""
    return np.asarray(u8).astype(np.float32) / np.float32(127.5) - np.float32(1)


def to_numpy(ds: tf.data.Dataset) -> np.ndarray:
    return np.stack([x.numpy() for x in ds])


# -------------------------------------------------------------------------------- IDX parser
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
def test_read_idx_roundtrip(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 5).reshape(2, 3, 5) * 7 - 40).astype(dtype)
    got = data.read_idx(write_idx(tmp_path / "x-idx3", arr, gz))
    assert got.dtype == np.dtype(dtype) and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


def test_read_idx_1d_labels(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "l", labels)), labels)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.*not an IDX"):
        data.read_idx(str(path))


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path, gz):
    payload = idx_bytes(random_uint8((4, 28, 28)))[:-10]
    path = tmp_path / ("t.gz" if gz else "t")
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(payload)
    with pytest.raises(data.DataError, match=f"{path.name}.*truncated"):
        data.read_idx(str(path))


def test_cut_off_gzip_stream(tmp_path):
    good = tmp_path / "good.gz"
    write_idx(good, random_uint8((50, 28, 28)), gz=True)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz"):
        data.read_idx(str(bad))


def test_idx_wrong_image_shape(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", random_uint8((3, 32, 32)))
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.*28, 28, 1"):
        data.load_images("mnist", data_dir=str(tmp_path))


# ------------------------------------------------------------------------------ IDX pipeline
@pytest.mark.parametrize("gz", [False, True])
def test_idx_pipeline_values_and_scaling(tmp_path, gz):
    d, train, test = mnist_dir(tmp_path, gz=gz)
    got = to_numpy(data.load_images("mnist", "train", d))
    assert got.dtype == np.float32 and got.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(got, scaled(train[..., None]))
    assert got[0, 0, 0, 0] == -1.0 and got[0, 0, 1, 0] == 1.0  # exact, not approximately
    assert got.min() == -1.0 and got.max() == 1.0
    np.testing.assert_array_equal(data.fixed_batch("mnist", 3, "test", d), scaled(test[:3, ..., None]))
    assert data.num_examples("mnist", "train", d) == 10
    assert data.num_examples("mnist", "test", d) == 4


def test_idx_missing_test_split(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", random_uint8((3, 28, 28)))
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte"):
        data.load_images("mnist", "test", str(tmp_path))


def test_fixed_batch_too_few(tmp_path):
    d, _, _ = mnist_dir(tmp_path)
    with pytest.raises(data.DataError, match="only 4"):
        data.fixed_batch("mnist", 5, "test", d)


# ------------------------------------------------------------------------- dirs and names
def test_missing_dir(tmp_path):
    with pytest.raises(data.DataError, match="nope"):
        data.load_images("mnist", data_dir=str(tmp_path / "nope"))


def test_empty_dir(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(data.DataError, match=r"no cifar10 data in .*image files .*found notes.txt, sub/"):
        data.load_images("cifar10", data_dir=str(tmp_path))


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match="fashion_mnist.*mnist.*cifar10.*celeb_a"):
        data.image_shape("imagenet")
    with pytest.raises(ValueError, match="valid"):
        data.load_images("svhn")


def test_image_shapes():
    assert data.image_shape("fashion_mnist") == (28, 28, 1)
    assert data.image_shape("mnist") == (28, 28, 1)
    assert data.image_shape("cifar10") == (32, 32, 3)
    assert data.image_shape("celeb_a") == (64, 64, 3)


def test_unprepared_tfds_is_data_error(tmp_path, monkeypatch):
    # No data_dir: TFDS's default directory (pointed at an empty one) is tried; it cannot download.
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DataError, match="cifar10.*--data_dir"):
        data.load_images("cifar10")
    with pytest.raises(data.DataError, match="cifar10"):
        data.num_examples("cifar10")


def test_tfds_tree_in_data_dir_is_used(tmp_path):
    # A prepared-looking TFDS tree in data_dir goes to TFDS (here: its metadata is unreadable).
    version = tmp_path / "mnist" / "3.0.1"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    with pytest.raises(data.DataError, match="TFDS dataset mnist"):
        data.load_images("mnist", data_dir=str(tmp_path))


def test_image_subfolder_named_like_dataset_is_not_tfds(tmp_path):
    write_pngs(tmp_path / "mnist", [random_uint8((28, 28, 1))])
    assert data.num_examples("mnist", data_dir=str(tmp_path)) == 1


def test_tfds_path_with_mocked_tfds():
    # TFDS cannot download here; its own mock stands in for prepared data (random images of each
    # dataset's real feature shape), so the TFDS branch and per-dataset preprocessing still run.
    tfds = pytest.importorskip("tensorflow_datasets")
    from unittest import mock

    with (
        tfds.testing.mock_data(num_examples=3),
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True),
    ):
        for name in ("mnist", "cifar10", "celeb_a"):
            got = to_numpy(data.load_images(name, "train"))
            assert got.shape == (3,) + data.image_shape(name) and got.dtype == np.float32
            assert got.min() >= -1 and got.max() <= 1


# ----------------------------------------------------------------------------- image folders
def test_image_folder_values(tmp_path):
    arrays = [random_uint8((32, 32, 3), s) for s in range(5)]
    write_pngs(tmp_path / "a", arrays[:2])
    write_pngs(tmp_path / "b" / "deeper", arrays[2:4])  # recursive, sorted by path
    write_pngs(tmp_path / "test", arrays[4:])
    got = to_numpy(data.load_images("cifar10", "train", str(tmp_path)))
    np.testing.assert_array_equal(got, scaled(np.stack(arrays[:4])))
    test = to_numpy(data.load_images("cifar10", "test", str(tmp_path)))
    np.testing.assert_array_equal(test, scaled(arrays[4][None]))
    assert data.num_examples("cifar10", "train", str(tmp_path)) == 4
    assert data.num_examples("cifar10", "test", str(tmp_path)) == 1


def test_image_folder_greyscale(tmp_path):
    arrays = [random_uint8((28, 28, 1), s) for s in range(3)]
    write_pngs(tmp_path, arrays)
    got = to_numpy(data.load_images("fashion_mnist", "train", str(tmp_path)))
    np.testing.assert_array_equal(got, scaled(np.stack(arrays)))


def test_image_folder_without_test_split(tmp_path):
    write_pngs(tmp_path, [random_uint8((32, 32, 3))])
    with pytest.raises(data.DataError, match="test/"):
        data.load_images("cifar10", "test", str(tmp_path))


@pytest.mark.parametrize("shape", [(28, 28, 3), (30, 28, 1)])
def test_image_folder_wrong_first_file(tmp_path, shape):
    paths = write_pngs(tmp_path, [random_uint8(shape)])
    got = "x".join(map(str, shape))
    with pytest.raises(data.DataError, match=f"{os.path.basename(paths[0])}: it is {got}, mnist needs 28x28x1"):
        data.load_images("mnist", data_dir=str(tmp_path))


def _good_folder(directory, n=200):
    return write_pngs(directory, [random_uint8((28, 28, 1), s) for s in range(n)])


def _truncate(path):
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])


@pytest.mark.parametrize(
    "fault, needle",
    [
        ("zero bytes", "the file is empty"),
        ("rgb", "it is 28x28x3, fashion_mnist needs 28x28x1"),
        ("wrong size", "it is 30x28x1"),
        ("truncated png", "cannot decode"),
        ("not an image", "cannot decode"),
        ("truncated jpeg", "cannot decode"),
    ],
)
def test_bad_file_further_into_a_folder_is_named_before_any_batch(tmp_path, fault, needle):
    """A bad image late in a folder: 200 good greyscale PNGs and one bad file late in the listing; the error
    names it when the dataset is built, not when training reaches it."""
    paths = _good_folder(tmp_path)
    bad = paths[150]
    if fault == "zero bytes":
        open(bad, "wb").close()
    elif fault == "rgb":
        Image.fromarray(random_uint8((28, 28, 3))).save(bad)
    elif fault == "wrong size":
        Image.fromarray(random_uint8((30, 28))).save(bad)
    elif fault == "truncated png":
        _truncate(bad)
    elif fault == "not an image":
        with open(bad, "wb") as f:
            f.write(b"GIF89a but not really")
    else:
        os.remove(bad)
        bad = bad[:-4] + ".jpg"
        Image.fromarray(random_uint8((28, 28))).save(bad, quality=90)
        _truncate(bad)
    for build in (
        lambda: data.load_images("fashion_mnist", "train", str(tmp_path)),
        lambda: data.make_train_dataset("fashion_mnist", 8, str(tmp_path), seed=0),
    ):
        with pytest.raises(data.BadImages, match=f"{os.path.basename(bad)}: {needle}"):
            build()


def test_bad_files_are_counted_and_the_test_split_is_checked_too(tmp_path):
    _good_folder(tmp_path / "train", 20)
    test = _good_folder(tmp_path / "test", 20)
    for i in (3, 7, 9):
        open(test[i], "wb").close()
    data.load_images("fashion_mnist", "train", str(tmp_path))  # the train split is fine
    with pytest.raises(
        data.BadImages,
        match=f"{os.path.basename(test[3])}: the file is empty "
        r"\(and 2 more bad file\(s\): .*img_007.png, .*img_009.png\)",
    ):
        data.load_images("fashion_mnist", "test", str(tmp_path))


def test_image_folder_undecodable_first_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(data.DataError, match="broken.png"):
        data.load_images("cifar10", data_dir=str(tmp_path))


# -------------------------------------------------------------------------- celeb_a crop
def test_celeb_a_preprocessing(tmp_path):
    raw = random_uint8((218, 178, 3), 7)
    write_pngs(tmp_path, [raw])
    got = to_numpy(data.load_images("celeb_a", data_dir=str(tmp_path)))[0]
    assert got.shape == (64, 64, 3)
    # The reference's centre crop, done in numpy, then the same bicubic resize.
    top, left = (218 - 108) // 2, (178 - 108) // 2
    crop = raw[top : top + 108, left : left + 108].astype(np.float32)
    want = tf.image.resize(crop, [64, 64], method="bicubic").numpy()
    want = np.clip(want, 0, 255) / 127.5 - 1
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.min() >= -1 and got.max() <= 1


def test_celeb_a_wrong_raw_size(tmp_path):
    write_pngs(tmp_path, [random_uint8((64, 64, 3))])
    with pytest.raises(data.DataError, match="218x178x3"):
        data.load_images("celeb_a", data_dir=str(tmp_path))


# ------------------------------------------------------------------------- train pipeline
def test_train_dataset_static_shape_and_epoch_coverage(tmp_path):
    n = 20
    arr = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 28 * 28, axis=1).reshape(n, 28, 28)
    write_idx(tmp_path / "train-images-idx3-ubyte", arr)
    ds = data.make_train_dataset("mnist", 4, str(tmp_path), seed=3, shuffle_buffer=100, repeat=False)
    assert ds.element_spec.shape == (4, 28, 28, 1)  # static batch: drop_remainder
    ids = np.concatenate([np.rint((b.numpy()[:, 0, 0, 0] + 1) * 127.5) for b in ds]).astype(int)
    assert sorted(ids) == list(range(n))
    assert list(ids) != list(range(n))  # shuffled


def test_train_dataset_drops_remainder(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", random_uint8((10, 28, 28)))
    batches = list(data.make_train_dataset("mnist", 4, str(tmp_path), seed=0, repeat=False))
    assert [b.shape[0] for b in batches] == [4, 4]


def test_train_dataset_seeded_and_reshuffled(tmp_path):
    n = 16
    arr = np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)
    write_idx(tmp_path / "train-images-idx3-ubyte", arr)

    def order(seed, epochs=2):
        ds = data.make_train_dataset("mnist", n, str(tmp_path), seed=seed)
        it = iter(ds)
        return [tuple(np.rint((next(it).numpy()[:, 0, 0, 0] + 1) * 127.5).astype(int)) for _ in range(epochs)]

    a, b, c = order(5), order(5), order(6)
    assert a == b  # same seed, same order
    assert a != c
    assert a[0] != a[1] and sorted(a[0]) == sorted(a[1]) == list(range(n))  # reshuffled per epoch


def test_train_dataset_image_folder_is_cached_and_repeats(tmp_path):
    write_pngs(tmp_path, [random_uint8((32, 32, 3), s) for s in range(3)])
    ds = data.make_train_dataset("cifar10", 2, str(tmp_path), seed=0)
    batches = [b for _, b in zip(range(5), ds)]  # 10 images from 3: repeats past the epoch
    assert all(b.shape == (2, 32, 32, 3) for b in batches)


def test_train_dataset_bad_batch_size(tmp_path):
    with pytest.raises(ValueError):
        data.make_train_dataset("mnist", 0, str(tmp_path))


# ------------------------------------------------------------------------------------ grids
def test_grid_tile_positions():
    rng = np.random.default_rng(0)
    imgs = rng.uniform(-1, 1, (5, 4, 3, 3)).astype(np.float32)
    g = images.grid(imgs, ncol=2)
    assert g.dtype == np.uint8 and g.shape == (3 * 4, 2 * 3, 3)
    u8 = np.clip(np.rint((imgs + 1) * 127.5), 0, 255).astype(np.uint8)
    for i in range(5):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(g[r * 4 : (r + 1) * 4, c * 3 : (c + 1) * 3], u8[i])
    assert not g[8:, 3:].any()  # the empty sixth cell is black


def test_grid_default_ncol_and_extremes():
    imgs = np.full((9, 2, 2, 1), -1.0, np.float32)
    imgs[4] = 1.0
    imgs[0, 0, 0, 0] = 3.0  # out of range is clipped, not wrapped
    g = images.grid(imgs)
    assert g.shape == (6, 6, 1)
    assert g[0, 0, 0] == 255 and g[0, 1, 0] == 0
    assert (g[2:4, 2:4] == 255).all()  # centre tile


def test_grid_rejects_bad_shape():
    with pytest.raises(ValueError):
        images.grid(np.zeros((2, 4, 4, 2)))


@pytest.mark.parametrize("channels", [1, 3])
def test_save_grid_png(tmp_path, channels):
    imgs = np.random.default_rng(1).uniform(-1, 1, (4, 5, 6, channels)).astype(np.float32)
    path = tmp_path / "out" / "grid.png"
    images.save_grid(imgs, str(path), ncol=2)
    back = np.asarray(Image.open(path))
    want = images.grid(imgs, 2)
    np.testing.assert_array_equal(back, want[..., 0] if channels == 1 else want)


# --------------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_debian_fashion_mnist():
    if not os.path.isdir(data.FASHION_MNIST_DEBIAN_DIR):
        pytest.skip("apt-get install dataset-fashion-mnist")
    assert data.num_examples("fashion_mnist", "train") == 60000
    assert data.num_examples("fashion_mnist", "test") == 10000
    for split, n in (("train", 60000), ("test", 10000)):
        ds = data.load_images("fashion_mnist", split)
        assert ds.element_spec.shape == (28, 28, 1) and ds.element_spec.dtype == tf.float32
        x = next(iter(ds.batch(n)))
        assert x.shape == (n, 28, 28, 1)
        assert float(tf.reduce_min(x)) == -1.0 and float(tf.reduce_max(x)) == 1.0
    batch = next(iter(data.make_train_dataset("fashion_mnist", 64, seed=0)))
    assert batch.shape == (64, 28, 28, 1)


def test_interpolation_grid_rows_walk_between_codes():
    # Decoder: a code c in [-1, 1] becomes a 2x2 image filled with c, so each tile's value is the
    # interpolated code itself and can be checked by hand.
    imgs = np.stack([np.full((2, 2, 1), v, np.float32) for v in (-1.0, 0.5, 1.0, -0.5)])
    codes = np.array([[-1.0], [0.5], [1.0], [-0.5]], np.float32)
    decode = lambda z: np.broadcast_to(z[:, :, None, None], (len(z), 2, 2, 1))  # noqa: E731
    g = images.interpolation_grid(imgs, codes, decode, steps=3)
    assert g.shape == (2 * 2, 5 * 2, 1)  # pairs (0, 2) and (1, 3); image, 3 steps, image
    tile = lambda r, c: g[2 * r, 2 * c, 0]  # noqa: E731
    expected = [[-1.0, -1.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.0, -0.5, -0.5]]
    for r, row in enumerate(expected):
        assert [tile(r, c) for c in range(5)] == list(images.to_uint8(np.array(row)))


def test_interpolation_grid_needs_a_pair():
    with pytest.raises(ValueError, match="needs >= 2 images"):
        images.interpolation_grid(np.zeros((1, 2, 2, 1)), np.zeros((1, 3)), lambda z: z)


def _ids(ds) -> list[int]:
    """Image ids of images whose every pixel is its index (see the holdout tests)."""
    return [int(v) for b in ds for v in np.rint((np.asarray(b).reshape(len(b), -1)[:, 0] + 1) * 127.5)]


@pytest.mark.parametrize("source", ["idx", "folder"])
def test_holdout_slices_are_disjoint_and_cover_the_train_split(tmp_path, source):
    from pga_tf import config as config_lib

    n = 12
    if source == "idx":
        arr = np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)
        write_idx(tmp_path / "train-images-idx3-ubyte", arr)
        dataset = "mnist"
    else:  # file names sort as the ids do
        write_pngs(tmp_path, [np.full((32, 32, 3), i, np.uint8) for i in range(n)])
        dataset = "cifar10"
    train, validation = config_lib.holdout_splits(5)
    assert (train, validation) == ("train[:-5]", "train[-5:]")
    assert data.num_examples(dataset, train, str(tmp_path)) == 7
    assert data.num_examples(dataset, validation, str(tmp_path)) == 5
    assert _ids(data.load_images(dataset, validation, str(tmp_path)).batch(n)) == list(range(7, 12))
    trained = _ids(data.make_train_dataset(dataset, 7, str(tmp_path), seed=0, repeat=False, split=train))
    assert sorted(trained) == list(range(7))  # every training image once, no held-out one
    assert _ids(data.load_images(dataset, "train[2:4]", str(tmp_path)).batch(n)) == [2, 3]


def test_a_holdout_as_large_as_the_data_is_a_data_error(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", random_uint8((10, 28, 28)))
    with pytest.raises(data.DataError, match=r"split train\[:-10\] of mnist is empty: the train split has 10"):
        data.make_train_dataset("mnist", 2, str(tmp_path), split="train[:-10]")


@pytest.mark.parametrize("split", ["validation", "train[a:b]", "train[:5", "tset[:5]"])
def test_unknown_split_names_are_refused(tmp_path, split):
    write_idx(tmp_path / "train-images-idx3-ubyte", random_uint8((10, 28, 28)))
    with pytest.raises(ValueError, match="unknown split"):
        data.load_images("mnist", split, str(tmp_path))
