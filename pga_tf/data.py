"""Input pipelines: datasets as tf.data of float32 images in [-1, 1], NHWC.

This module knows datasets and nothing of models or training methods; configuration comes in as
function arguments. Three sources, tried in this order:

1. `data_dir` holding MNIST-format IDX files (train-images-idx3-ubyte[.gz], t10k-images-...),
   parsed here with numpy. For `fashion_mnist` with no `data_dir`, Debian's
   dataset-fashion-mnist package directory is used when it exists.
2. `data_dir` holding a prepared TFDS tree (`<data_dir>/<tfds_name>/<version>/`), or with no `data_dir`
   TFDS's default directory. This machine cannot download, so an unprepared dataset is a
   `DataError` telling how to supply the data.
3. `data_dir` holding image files (png/jpg/jpeg/bmp, searched recursively); a `test/` subfolder,
   when present, is the test split (and a `train/` subfolder, when present, the train split).

Every source yields uint8 images in the dataset's stored ("raw") shape; one per-dataset
preprocessing step (celeb_a: centre crop + bicubic resize) and the x / 127.5 - 1 scaling follow.

TensorFlow is imported by the functions that build pipelines or decode images only: finding the
data (`check`, `num_examples` of IDX files and image folders) needs none, so the programs report
a wrong --data_dir before TensorFlow has loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import gzip
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


class DataError(Exception):
    """A user-caused data problem (missing, corrupt or mis-shaped data). The message is one line."""


class BadImages(DataError):
    """Files of an image folder that cannot be decoded or have the wrong size or channels."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_shape: tuple[int, int, int]  # what the pipelines yield
    tfds_name: str
    raw_shape: tuple[int, int, int]  # how the images are stored, before preprocessing
    # Centre crop (offset_h, offset_w, size) applied to raw images before resizing, or None.
    crop: tuple[int, int, int] | None = None
    # Our split name -> TFDS split name.
    tfds_splits: tuple[tuple[str, str], ...] = (("train", "train"), ("test", "test"))
    default_dir: str | None = None  # local IDX directory used when no data_dir is given


FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

# CelebA as in the reference: a 108x108 crop centred on the 218x178 aligned image, to 64x64.
_CELEBA_CROP = 108

DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", (28, 28, 1), "fashion_mnist", (28, 28, 1), default_dir=FASHION_MNIST_DEBIAN_DIR
    ),
    "mnist": DatasetInfo("mnist", (28, 28, 1), "mnist", (28, 28, 1)),
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), "cifar10", (32, 32, 3)),
    "celeb_a": DatasetInfo(
        "celeb_a",
        (64, 64, 3),
        "celeb_a",
        (218, 178, 3),
        crop=((218 - _CELEBA_CROP) // 2, (178 - _CELEBA_CROP) // 2, _CELEBA_CROP),
    ),
}

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# IDX file stems per split (MNIST naming); labels are not needed: the models are unsupervised.
_IDX_STEMS = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
# Raw uint8 sources up to this size are cached in memory by make_train_dataset (decoding PNGs or
# TFDS records every epoch costs more than the step for the small models). CelebA is far above.
_CACHE_LIMIT_BYTES = 1 << 30


# ------------------------------------------------------------------------------------ lookup
def _info(dataset: str) -> DatasetInfo:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}") from None


# TFDS's split slicing, in absolute counts: "train[:-10000]", "train[-10000:]", "test[:500]".
_SLICED = re.compile(r"^(\w+)\[(-?\d*):(-?\d*)\]$")


def _split_parts(split: str) -> tuple[str, slice]:
    """(stored split, slice of it) of a split name, plain ("train") or sliced ("train[:-10000]")."""
    match = _SLICED.match(split)
    base, part = (
        (match.group(1), slice(*(int(g) if g else None for g in match.group(2, 3)))) if match else (split, slice(None))
    )
    if base not in SPLITS:
        raise ValueError(
            f"unknown split {split!r}; valid: {', '.join(SPLITS)}, each optionally "
            "sliced as TFDS does (train[:-10000], train[-10000:])"
        )
    return base, part


def image_shape(dataset: str) -> tuple[int, int, int]:
    """(height, width, channels) of the images `load_images(dataset)` yields."""
    return _info(dataset).image_shape


# ------------------------------------------------------------------------------- IDX format
# IDX type byte -> big-endian numpy dtype, per the IDX format description that ships with MNIST.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: str, limit: int | None = None) -> bytes:
    """File contents (at most `limit` bytes), gunzipped when the file starts with gzip's magic;
    sniffing rather than trusting the .gz suffix keeps renamed files readable."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        with opener(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except (OSError, EOFError) as e:  # includes gzip.BadGzipFile and a cut-off gzip stream
        raise DataError(f"cannot read {path}: {e}") from None


def _parse_idx_header(data: bytes, path: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, header length) from an IDX header: 0, 0, type byte, ndim, then ndim
    big-endian uint32 sizes."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_len:
        raise DataError(f"{path} has a bad or truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    return np.dtype(_IDX_DTYPES[data[2]]), dims, header_len


def read_idx(path: str) -> np.ndarray:
    """Parses an IDX file (raw or gzipped) into a numpy array of its stored shape and type."""
    data = _read_bytes(path)
    dtype, dims, offset = _parse_idx_header(data, path)
    expected = int(np.prod(dims)) * dtype.itemsize
    got = len(data) - offset
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: header {dims} needs {expected} data bytes, file has {got}")
    # Native byte order so TF can take the array without another conversion.
    return np.frombuffer(data, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_num_items(path: str) -> int:
    """The first dimension of an IDX file, from its header alone (no full decompress)."""
    head = _read_bytes(path, limit=4 + 4 * 255)
    _, dims, _ = _parse_idx_header(head, path)
    return dims[0]


def _find_idx(directory: str, split: str) -> str | None:
    stem = os.path.join(directory, _IDX_STEMS[split])
    for path in (stem, stem + ".gz"):
        if os.path.isfile(path):
            return path
    return None


def _has_idx(directory: str) -> bool:
    return any(_find_idx(directory, s) for s in SPLITS)


@functools.lru_cache(maxsize=4)
def _idx_images_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    del size, mtime_ns  # part of the cache key only: a rewritten file is read again
    arr = read_idx(path)
    arr.setflags(write=False)  # shared between callers
    return arr


def _idx_images(path: str, info: DatasetInfo) -> np.ndarray:
    """The uint8 (N, H, W, C) images of an IDX file, checked against the dataset's shape."""
    st = os.stat(path)
    arr = _idx_images_cached(path, st.st_size, st.st_mtime_ns)
    if arr.ndim == 3:  # MNIST-style (N, H, W): greyscale
        arr = arr[..., None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != info.raw_shape:
        raise DataError(
            f"{path} holds {arr.dtype} items of shape {arr.shape[1:]}; {info.name} needs "
            f"uint8 images of shape {info.raw_shape}"
        )
    return arr


# ----------------------------------------------------------------------------- image folders
def _list_images(directory: str, exclude: str | None = None) -> list[str]:
    """Image files under `directory`, recursively, sorted so "the first n" is stable.

    Hidden files and folders (a leading '.': .ipynb_checkpoints/, macOS's ._name AppleDouble
    files, .DS_Store) are not data. Symbolic links are followed, to files and folders alike (a
    folder reached twice, e.g. through a link loop, is read once); a link to nothing is a
    BadImages naming it.
    """
    paths, seen = [], set()
    for root, dirs, files in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (exclude is None or os.path.join(root, d) != exclude)
        )
        for f in sorted(files):
            if f.startswith(".") or not f.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(root, f)
            if not os.path.exists(path):  # only a symbolic link can be listed and not exist
                raise BadImages(
                    f"{shown(path)} is a symbolic link to {shown(os.readlink(path))}, which does not "
                    "exist; remove or fix it"
                )
            paths.append(path)
    return paths


def describe(dataset: str, split: str = "train", data_dir: str | None = None) -> str:
    """Where `split`'s images come from and how many there are, for the start-up line."""
    info = _info(dataset)
    base, _ = _split_parts(split)
    src = _choose_source(info, base, data_dir)
    n = num_examples(dataset, split, data_dir)
    if src.kind == "idx":
        return f"{n} {split} images from the IDX file {src.idx_path}"
    if src.kind == "tfds":
        return f"{n} {split} images from TFDS {info.tfds_name} in {src.data_dir or 'its default directory'}"
    sub = os.path.join(src.data_dir, base)
    where = sub if os.path.isdir(sub) else src.data_dir
    return f"{n} {split} images (image files, hidden ones skipped, symbolic links followed) under {where}"


def _looked_for(info: DatasetInfo, data_dir: str, split: str = "train") -> str:
    """Every kind of data a --data_dir may hold for `split` of `info`, where each was looked for,
    what this one holds instead, and a subfolder that holds the data, if one does."""
    try:
        entries = sorted(e for e in os.listdir(data_dir) if not e.startswith("."))
    except OSError:
        entries = []
    found = []
    tree = os.path.join(data_dir, info.tfds_name)
    if os.path.isdir(tree):
        versions = [
            f"{v}/ ({'with' if os.path.isfile(os.path.join(tree, v, 'dataset_info.json')) else 'no'} dataset_info.json)"
            for v in sorted(os.listdir(tree))[:4]
        ]
        found.append(f"{info.tfds_name}/ holding {', '.join(versions) or 'nothing'}")
    others = [e + ("/" if os.path.isdir(os.path.join(data_dir, e)) else "") for e in entries if e != info.tfds_name]
    if others:
        found.append(", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else ""))
    idx = ", ".join(f"{stem}[.gz]" for stem in _IDX_STEMS.values())
    images = (
        "DIR/test/ and its subfolders (an image folder's test split is its test/ subfolder)"
        if split == "test"
        else "DIR and all its subfolders"
    )
    message = (
        f"looked in DIR={data_dir} for MNIST-format IDX files ({idx}) and a TFDS tree "
        f"DIR/{info.tfds_name}/<version>/ with dataset_info.json, and for image files "
        f"({'/'.join(IMAGE_EXTENSIONS)}, hidden ones skipped) in {images}; found "
        f"{'; '.join(found) or 'an empty directory'}"
    )
    holding = [
        os.path.join(data_dir, e)
        for e in entries
        if os.path.isdir(os.path.join(data_dir, e))
        and (_has_idx(os.path.join(data_dir, e)) or _is_tfds_tree(info, os.path.join(data_dir, e)))
    ]
    if holding:
        message += f" (did you mean --data_dir={holding[0]}?)"
    return message


def _folder_paths(directory: str, split: str, info: DatasetInfo) -> list[str]:
    test_dir = os.path.join(directory, "test")
    train_dir = os.path.join(directory, "train")
    if split == "test":
        paths = _list_images(test_dir) if os.path.isdir(test_dir) else []
    elif os.path.isdir(train_dir):
        paths = _list_images(train_dir)
    else:
        paths = _list_images(directory, exclude=test_dir)
    if not paths:
        which = "" if split == "train" else f" for the {split} split"
        raise DataError(f"no {info.name} data{which} in {directory}: {_looked_for(info, directory, split)}")
    return paths


def _decode_file(path: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    # dtype=uint8 also brings 16-bit PNGs to 8 bits; channels are kept as stored, so a wrong
    # channel count is caught below instead of silently converted.
    return tf.io.decode_image(tf.io.read_file(path), channels=0, dtype=tf.uint8, expand_animations=False)


def _probe(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(path, decoded shape) of one file, decoding it as the pipeline will: the same decoders,
    so a file that passes decodes in training too. A JPEG is decoded at 1/8 scale (its header
    gives the size): every scan is still read, so a truncated file fails, at a fraction of the
    cost of a full decode."""
    import tensorflow as tf

    raw = tf.io.read_file(path)

    def jpeg():
        small = tf.io.decode_jpeg(raw, ratio=8)
        return tf.concat([tf.image.extract_jpeg_shape(raw)[:2], tf.shape(small)[2:]], 0)

    def other():
        img = tf.io.decode_image(raw, channels=0, dtype=tf.uint8, expand_animations=False)
        return tf.shape(img)

    return path, tf.cond(tf.io.is_jpeg(raw), jpeg, other)


_checked: dict[tuple, None] = {}


def _check_images(paths: list[str], info: DatasetInfo) -> None:
    """Decode every file once, up front, so a bad file further into a folder is named before
    training starts instead of ending it later with a traceback. Raises BadImages naming the
    first bad file (and how many more there are). Passing folders are remembered by their
    files' sizes and mtimes, so the several readers of one split check it once per process."""
    import tensorflow as tf

    key = (info.raw_shape, tuple(paths), tuple((st.st_size, st.st_mtime_ns) for st in map(os.stat, paths)))
    if key in _checked:
        return
    # Files that fail to decode are dropped by ignore_errors; they are the ones missing below.
    probed = (
        tf.data.Dataset.from_tensor_slices([_tf_path(p) for p in paths])
        .map(_probe, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .batch(4096)
    )
    shapes = {}
    for batch_paths, batch_shapes in probed.as_numpy_iterator():
        shapes.update(zip(map(os.fsdecode, batch_paths), map(tuple, batch_shapes)))
    bad = [p for p in paths if shapes.get(p) != info.raw_shape]
    if bad:
        more = (
            f" (and {len(bad) - 1} more bad file(s): {', '.join(map(shown, bad[1:4]))}"
            f"{', ...' if len(bad) > 4 else ''})"
            if len(bad) > 1
            else ""
        )
        raise BadImages(
            f"bad image file {shown(bad[0])}: {_why_bad(bad[0], shapes.get(bad[0]), info)}{more}; remove or fix it"
        )
    _checked[key] = None


def _tf_path(path: str) -> bytes:
    """A path as TensorFlow takes it: its bytes on disk. A name that is not valid UTF-8 (a Latin-1
    byte, which Python holds as a surrogate escape) cannot become a tf.string from str."""
    return os.fsencode(path)


def shown(path: str) -> str:
    """A path for a message: bytes that are not UTF-8 shown escaped (\\xe9), never an error."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _why_bad(path: str, shape: tuple | None, info: DatasetInfo) -> str:
    import tensorflow as tf

    if shape is not None:
        return f"it is {_fmt(shape)}, {info.name} needs {_fmt(info.raw_shape)}"
    if os.path.getsize(path) == 0:
        return "the file is empty"
    try:
        _decode_file(tf.constant(_tf_path(path)))
    except tf.errors.OpError as e:
        return f"cannot decode it ({e.message.splitlines()[0].split(' [Op:')[0]})"
    return "cannot decode it"


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _folder_dataset(paths: list[str], info: DatasetInfo) -> tf.data.Dataset:
    import tensorflow as tf

    raw_shape = info.raw_shape
    message = f"{info.name} needs {_fmt(raw_shape)} images; this file is not (path, shape):"

    def decode_checked(path: tf.Tensor) -> tf.Tensor:
        img = _decode_file(path)
        ok = tf.reduce_all(tf.equal(tf.shape(img), raw_shape))
        with tf.control_dependencies([tf.debugging.Assert(ok, [message, path, tf.shape(img)])]):
            img = tf.identity(img)
        return tf.ensure_shape(img, raw_shape)

    ds = tf.data.Dataset.from_tensor_slices([_tf_path(p) for p in paths])
    return ds.map(decode_checked, num_parallel_calls=tf.data.AUTOTUNE)  # order is kept


# ------------------------------------------------------------------------------------- TFDS
def _tfds_builder(info: DatasetInfo, data_dir: str | None):
    """A prepared TFDS builder, or DataError saying how to supply the data."""
    try:
        import tensorflow_datasets as tfds  # slow to import: only when TFDS is used
    except ImportError as e:
        raise DataError(
            f"tensorflow_datasets is not importable ({e}); install it, or pass "
            f"--data_dir with IDX or image files for {info.name}"
        ) from None
    try:
        with _quiet_absl():
            builder = tfds.builder(info.tfds_name, data_dir=data_dir)
            prepared = builder.is_prepared()
    except Exception as e:  # TFDS raises many types here (missing files, network, metadata)
        raise DataError(_tfds_missing(info, data_dir, f"{type(e).__name__}: {e}".splitlines()[0])) from e
    if not prepared:
        raise DataError(_tfds_missing(info, data_dir, "not prepared"))
    return builder


@contextlib.contextmanager
def _quiet_absl():
    """absl's warnings off while TFDS looks a tree over: it logs one line per version folder it
    skips ("Variant folder ... has no dataset_info.json"), beside the one error line that already
    says what is missing."""
    from absl import logging as absl_logging

    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(previous)


def _tfds_missing(info: DatasetInfo, data_dir: str | None, why: str) -> str:
    if data_dir is None:
        local = (
            f" (nor IDX files {', '.join(s + '[.gz]' for s in _IDX_STEMS.values())} in {info.default_dir})"
            if info.default_dir
            else ""
        )
        return (
            f"TFDS dataset {info.tfds_name} is unavailable in the TFDS default directory "
            f"(~/tensorflow_datasets or $TFDS_DATA_DIR) ({why}){local} and cannot be downloaded here; "
            f"pass --data_dir DIR with IDX files, image files, or a TFDS tree prepared "
            f"elsewhere (DIR/{info.tfds_name}/<version>/ with dataset_info.json)"
        )
    return (
        f"TFDS dataset {info.tfds_name} is unavailable in {data_dir} ({why}) and cannot be "
        f"downloaded here; {_looked_for(info, data_dir)}"
    )


def _tfds_split(info: DatasetInfo, split: str) -> str:
    return dict(info.tfds_splits)[split]


def _tfds_dataset(info: DatasetInfo, split: str, data_dir: str | None) -> tf.data.Dataset:
    import tensorflow as tf

    builder = _tfds_builder(info, data_dir)
    try:
        ds = builder.as_dataset(split=_tfds_split(info, split), shuffle_files=False)
    except (ValueError, KeyError, AssertionError) as e:  # a split or its files are missing
        raise DataError(_tfds_missing(info, data_dir, f"split {split}: {e}".splitlines()[0])) from e
    return ds.map(lambda ex: ex["image"], num_parallel_calls=tf.data.AUTOTUNE)


def _tfds_num_examples(info: DatasetInfo, split: str, data_dir: str | None) -> int:
    builder = _tfds_builder(info, data_dir)
    try:
        return int(builder.info.splits[_tfds_split(info, split)].num_examples)
    except KeyError as e:
        raise DataError(_tfds_missing(info, data_dir, f"no {split} split: {e}".splitlines()[0])) from e


def _is_tfds_tree(info: DatasetInfo, data_dir: str) -> bool:
    """True when data_dir holds a prepared TFDS dataset: <name>/[<config>/]<version>/dataset_info.json.
    Looking for the metadata file, not just a <name>/ folder, keeps an image subfolder that happens
    to be called e.g. mnist/ from being taken for TFDS."""
    root = os.path.join(data_dir, info.tfds_name)
    return any(glob.glob(os.path.join(root, *stars, "dataset_info.json")) for stars in (["*"], ["*", "*"]))


# ----------------------------------------------------------------------------- source choice
@dataclasses.dataclass(frozen=True)
class _Source:
    kind: str  # "idx", "tfds" or "folder"
    data_dir: str | None
    idx_path: str | None = None


def _choose_source(info: DatasetInfo, split: str, data_dir: str | None) -> _Source:
    if data_dir is None:
        if info.default_dir and os.path.isdir(info.default_dir) and _has_idx(info.default_dir):
            data_dir = info.default_dir
        else:
            return _Source("tfds", None)
    elif not os.path.isdir(data_dir):
        raise DataError(f"data_dir {data_dir} does not exist or is not a directory")
    if _has_idx(data_dir):
        path = _find_idx(data_dir, split)
        if path is None:
            raise DataError(f"{data_dir} has IDX files but no {_IDX_STEMS[split]}[.gz] for the {split} split")
        return _Source("idx", data_dir, path)
    if _is_tfds_tree(info, data_dir):
        return _Source("tfds", data_dir)
    return _Source("folder", data_dir)


def _raw_dataset(info: DatasetInfo, split: str, data_dir: str | None) -> tuple[tf.data.Dataset, _Source]:
    """uint8 images in the dataset's raw shape, in stored order, and where they came from."""
    import tensorflow as tf

    src = _choose_source(info, split, data_dir)
    if src.kind == "idx":
        return tf.data.Dataset.from_tensor_slices(_idx_images(src.idx_path, info)), src
    if src.kind == "tfds":
        return _tfds_dataset(info, split, src.data_dir), src
    paths = _folder_paths(src.data_dir, split, info)
    _check_images(paths, info)
    return _folder_dataset(paths, info), src


# ---------------------------------------------------------------------------- preprocessing
def scale(images: tf.Tensor) -> tf.Tensor:
    """uint8-valued [0, 255] -> float32 [-1, 1], exactly: 0 -> -1, 255 -> 1."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def preprocess_fn(dataset: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The map from one raw stored image (uint8, raw shape) to a float32 [-1, 1] model input."""
    import tensorflow as tf

    info = _info(dataset)
    if info.crop is None:
        return scale

    top, left, size = info.crop
    height, width, _ = info.image_shape

    def crop_resize(img: tf.Tensor) -> tf.Tensor:
        img = tf.image.crop_to_bounding_box(img, top, left, size, size)
        img = tf.image.resize(tf.cast(img, tf.float32), [height, width], method="bicubic")
        # Bicubic overshoots at edges; clip back to the pixel range before scaling.
        return tf.clip_by_value(img, 0.0, 255.0) / 127.5 - 1.0

    return crop_resize


# -------------------------------------------------------------------------------------- API
def load_images(dataset: str, split: str = "train", data_dir: str | None = None) -> tf.data.Dataset:
    """Unbatched, unshuffled float32 [-1, 1] images of `image_shape(dataset)` for `split` (a
    stored split, or a slice of one as TFDS writes it: "train[:-10000]")."""
    import tensorflow as tf

    raw, _ = _sliced_raw_dataset(_info(dataset), split, data_dir)
    return raw.map(preprocess_fn(dataset), num_parallel_calls=tf.data.AUTOTUNE)


def num_examples(dataset: str, split: str = "train", data_dir: str | None = None) -> int | None:
    """How many images `load_images` yields for `split` (read from headers / listings / TFDS
    metadata, without decoding the images)."""
    info = _info(dataset)
    base, part = _split_parts(split)
    n = _stored_num_examples(info, base, data_dir)
    start, stop, _ = part.indices(n)
    return max(0, stop - start)


def _stored_num_examples(info: DatasetInfo, split: str, data_dir: str | None) -> int:
    src = _choose_source(info, split, data_dir)
    if src.kind == "idx":
        return _idx_num_items(src.idx_path)
    if src.kind == "tfds":
        return _tfds_num_examples(info, split, src.data_dir)
    return len(_folder_paths(src.data_dir, split, info))


def _slice_bounds(info: DatasetInfo, split: str, data_dir: str | None) -> tuple[int, int]:
    """(start, stop) of the slice `split` names in its stored split; DataError for an empty slice:
    a hold-out larger than the data leaves nothing to train on."""
    base, part = _split_parts(split)
    n = _stored_num_examples(info, base, data_dir)
    start, stop, _ = part.indices(n)
    if stop <= start:
        raise DataError(f"split {split} of {info.name} is empty: the {base} split has {n} images")
    return start, stop


def _sliced_raw_dataset(info: DatasetInfo, split: str, data_dir: str | None) -> tuple[tf.data.Dataset, _Source]:
    """_raw_dataset of a stored split, cut to the slice `split` names (_slice_bounds)."""
    base, part = _split_parts(split)
    raw, src = _raw_dataset(info, base, data_dir)
    if part == slice(None):
        return raw, src
    start, stop = _slice_bounds(info, split, data_dir)
    return raw.skip(start).take(stop - start), src


def check(dataset: str, split: str = "train", data_dir: str | None = None) -> None:
    """Raise DataError (one line) if `split` of `dataset` is not found where `data_dir` says: what
    the pipelines check first, without TensorFlow, so a program can say it before loading it.

    Checked: the directory, the source found in it, an IDX file's header, an image folder's file
    names, the slice `split` names. Not checked: the images themselves (decoded when a pipeline
    is built) and a TFDS dataset (TFDS needs TensorFlow to read its metadata).
    """
    info = _info(dataset)
    base, _ = _split_parts(split)
    if _choose_source(info, base, data_dir).kind != "tfds":
        _slice_bounds(info, split, data_dir)


def make_train_dataset(
    dataset: str,
    batch_size: int,
    data_dir: str | None = None,
    seed: int | None = None,
    shuffle_buffer: int = 10000,
    repeat: bool = True,
    drop_remainder: bool = True,
    split: str = "train",
) -> tf.data.Dataset:
    """Shuffled (reshuffled each epoch, reproducibly for a given seed), repeated, batched,
    prefetched float32 [-1, 1] images of `split` (the train split, or a slice of it that holds
    out a validation part: config.holdout_splits). drop_remainder keeps every batch the same static
    size, so a compiled train step is traced once. shuffle_buffer <= 0 disables shuffling."""
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = _info(dataset)
    ds, src = _sliced_raw_dataset(info, split, data_dir)
    # IDX arrays already live in memory (from_tensor_slices): caching them again would copy.
    if src.kind != "idx" and _small_enough_to_cache(info, data_dir):
        ds = ds.cache()  # raw uint8: 4x smaller than the float images, and scaling is cheap
    if shuffle_buffer > 0:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # Preprocess after the shuffle so the buffer holds small uint8 images.
    ds = ds.map(preprocess_fn(dataset), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def _small_enough_to_cache(info: DatasetInfo, data_dir: str | None) -> bool:
    n = num_examples(info.name, "train", data_dir)
    return n is not None and n * int(np.prod(info.raw_shape)) <= _CACHE_LIMIT_BYTES


def fixed_batch(dataset: str, n: int, split: str = "test", data_dir: str | None = None) -> np.ndarray:
    """The first n images of `split` as a float32 numpy array (n, h, w, c), for preview grids."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    batch = next(iter(load_images(dataset, split, data_dir).take(n).batch(n)), None)
    if batch is None or batch.shape[0] < n:
        got = 0 if batch is None else batch.shape[0]
        raise DataError(f"{dataset} {split} split has only {got} images; {n} requested")
    return batch.numpy()
