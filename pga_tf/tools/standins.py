"""Stand-in CIFAR-10 and CelebA data made from Fashion-MNIST, for training the paper's CIFAR-10
and CelebA settings on a machine that has neither data set.

    python -m pga_tf.tools.standins --dataset=cifar10 --out=data/cifar10_standin
    python train.py --flagfile=flags/lpga_cifar10.cfg --data_dir=data/cifar10_standin

These are NOT the paper's data: figures on them say whether the nets, batch norm, the RGB path
and the crop-and-resize train and export correctly, not how PGA does on CIFAR-10 or CelebA.

- cifar10: each 28x28 garment padded by 2 pixels to 32x32 and tinted by a fixed colour per class
  (CLASS_COLOURS), so the three channels differ and colour statistics matter.
- celeb_a: the same tinted garment enlarged to the 108x108 centre crop of a 218x178 canvas (the
  aligned CelebA size) over a dim background gradient, so the pipeline's crop and resize to 64x64
  run exactly as on the real images.

Both are written as MNIST-format IDX files (images of shape [N, H, W, 3], and labels), which
`--data_dir` reads and `python -m pga_tf.evaluation.classifier --dataset=<name> --data_dir=...` trains a
domain classifier on, for FIDs on the stand-in.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

# One colour per Fashion-MNIST class (T-shirt, trouser, pullover, dress, coat, sandal, shirt,
# sneaker, bag, ankle boot), far apart in RGB.
CLASS_COLOURS = (
    np.array(
        [
            (230, 25, 75),
            (60, 180, 75),
            (255, 225, 25),
            (0, 130, 200),
            (245, 130, 48),
            (145, 30, 180),
            (70, 240, 240),
            (240, 50, 230),
            (210, 245, 60),
            (250, 190, 212),
        ],
        np.float32,
    )
    / 255.0
)
SHAPES = {"cifar10": (32, 32, 3), "celeb_a": (218, 178, 3)}
CELEBA_CROP = 108  # the centre crop pga_tf.data takes of an aligned 218x178 CelebA image
DEFAULT_COUNTS = {"cifar10": (60000, 10000), "celeb_a": (10000, 2000)}  # (train, test) images


def tint(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N, H, W] uint8 grey garments -> [N, H, W, 3] uint8, each scaled by its class colour."""
    g = np.asarray(grey, np.float32)[..., None] / 255.0
    return np.rint(g * CLASS_COLOURS[np.asarray(labels)][:, None, None, :] * 255.0).astype(np.uint8)


def render_cifar10(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N, 28, 28] garments -> [N, 32, 32, 3] tinted, padded by 2 pixels of black."""
    return np.pad(tint(grey, labels), ((0, 0), (2, 2), (2, 2), (0, 0)))


def render_celeb_a(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N, 28, 28] garments -> [N, 218, 178, 3]: the tinted garment, enlarged (nearest neighbour,
    28 -> 112 then the centre 108) into the centre 108x108, over a dim vertical gradient that
    the crop partly removes (the garment's brightness is its opacity)."""
    h, w, _ = SHAPES["celeb_a"]
    enlarge = lambda a: a.repeat(4, axis=1).repeat(4, axis=2)[:, 2 : 2 + CELEBA_CROP, 2 : 2 + CELEBA_CROP]  # noqa: E731
    garment = enlarge(tint(grey, labels)).astype(np.float32)
    alpha = enlarge(np.asarray(grey, np.float32) / 255.0)[..., None]  # the garment covers the background
    canvas = np.empty((len(grey), h, w, 3), np.float32)
    canvas[:] = np.linspace(10, 60, h, dtype=np.float32)[None, :, None, None]
    top, left = (h - CELEBA_CROP) // 2, (w - CELEBA_CROP) // 2
    crop = canvas[:, top : top + CELEBA_CROP, left : left + CELEBA_CROP]
    canvas[:, top : top + CELEBA_CROP, left : left + CELEBA_CROP] = crop * (1 - alpha) + garment
    return np.rint(canvas).astype(np.uint8)


RENDER = {"cifar10": render_cifar10, "celeb_a": render_celeb_a}


def write_idx(path: str, array: np.ndarray) -> None:
    """A gzipped MNIST-format IDX file of a uint8 array (any rank), written atomically."""
    array = np.ascontiguousarray(array, np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    tmp = path + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=3) as f:
        f.write(header)
        f.write(array.tobytes())
    os.replace(tmp, path)


def write(dataset: str, out: str, source_dir: str, counts: tuple[int, int] | None = None, log=print) -> dict:
    """Render the stand-in for `dataset` from the Fashion-MNIST IDX files in `source_dir` and
    write train/t10k images and labels into `out`; returns {split: image count}.

    Everything is checked before `out` is made or touched (see check_out), so a refused call
    leaves no directory behind and never replaces another data set.

    Raises:
      ValueError: an unknown dataset, a count below 1 or above the source's, a source dir
        without the four IDX files, or an `out` that cannot hold this stand-in.
    """
    from pga_tf import data  # its IDX reader (and TensorFlow, which it imports)

    if dataset not in RENDER:
        raise ValueError(f"no stand-in for {dataset!r}; choose one of {', '.join(RENDER)}")
    counts = counts or DEFAULT_COUNTS[dataset]
    if min(counts) < 1:
        raise ValueError(f"image counts must be at least 1, got train {counts[0]}, test {counts[1]}")
    check_out(out, dataset)
    sources = {}
    for (stem, split), n in zip((("train", "train"), ("t10k", "test")), counts):
        images = data.read_idx(_source(source_dir, f"{stem}-images-idx3-ubyte"))
        labels = data.read_idx(_source(source_dir, f"{stem}-labels-idx1-ubyte"))
        if n > len(images):
            raise ValueError(f"{n} {split} images asked for; the source has {len(images)}")
        if len(labels) != len(images) or images.ndim != 3:
            raise ValueError(
                f"{source_dir} does not hold Fashion-MNIST's {stem} files: {len(images)} images of "
                f"shape {images.shape[1:]}, {len(labels)} labels"
            )
        sources[stem, split] = images, labels, n
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out={out}: cannot make the directory ({e.strerror})") from None
    # The README first: it is what marks the directory as this stand-in's (check_out), so a
    # write stopped halfway can be run again into the same --out.
    with open(os.path.join(out, README), "w") as f:
        f.write(f"{_readme_first_line(dataset)} ({source_dir}): tinted garments, not the real {dataset} data.\n")
    written = {}
    for (stem, split), (images, labels, n) in sources.items():
        chunks = [
            RENDER[dataset](images[i : min(i + 5000, n)], labels[i : min(i + 5000, n)]) for i in range(0, n, 5000)
        ]
        rendered = np.concatenate(chunks)
        write_idx(os.path.join(out, f"{stem}-images-idx3-ubyte.gz"), rendered)
        write_idx(os.path.join(out, f"{stem}-labels-idx1-ubyte.gz"), labels[:n].astype(np.uint8))
        written[split] = n
        log(f"{split}: {n} images of {rendered.shape[1:]} -> {out}")
    return written


README = "README.txt"  # what write leaves beside the IDX files, naming the stand-in


def _readme_first_line(dataset: str) -> str:
    return f"Stand-in {dataset} rendered by `python -m pga_tf.tools.standins` from Fashion-MNIST"


def check_out(out: str, dataset: str) -> None:
    """Refuse an `out` that write must not touch: a path that is not a directory (or cannot
    become one), or a directory holding anything but an earlier stand-in of the same dataset,
    which write would silently replace (another data set, a classifier or run built on it).

    Raises:
      ValueError: one line naming --out and what it holds.
    """
    from pga_tf import config

    problem = config.output_path_problem("out", out, directory=True)
    if problem:
        raise ValueError(problem)
    if not os.path.exists(out):
        return
    entries = os.listdir(out)
    if not entries:
        return
    ours = {*STANDIN_FILES, *(name + ".tmp" for name in STANDIN_FILES), README}  # .tmp: a write stopped
    try:
        with open(os.path.join(out, README)) as f:
            first = f.readline()
    except OSError:
        first = ""
    foreign = sorted(set(entries) - ours)
    if foreign:
        what = f"{len(foreign)} file(s) no stand-in has, e.g. {foreign[0]!r}"
    elif first.startswith(_readme_first_line(dataset) + " "):
        return  # an earlier stand-in of the same dataset: written again in place
    elif first.startswith("Stand-in "):
        what = f"a {first.split()[1]} stand-in"
    else:
        what = f"IDX files without a stand-in's {README}"
    raise ValueError(f"--out={out} already holds {what}; write the {dataset} stand-in to a new or empty directory")


STANDIN_FILES = tuple(
    f"{stem}-{kind}-idx{rank}-ubyte.gz" for stem in ("train", "t10k") for kind, rank in (("images", 3), ("labels", 1))
)


def _source(directory: str, stem: str) -> str:
    for path in (os.path.join(directory, stem), os.path.join(directory, stem + ".gz")):
        if os.path.exists(path):
            return path
    raise ValueError(f"--source_dir={directory} has no {stem}[.gz] (Fashion-MNIST IDX files)")


def main(argv) -> None:
    from absl import flags

    from pga_tf import cli

    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    counts = (f.train_count or DEFAULT_COUNTS[f.dataset][0], f.test_count or DEFAULT_COUNTS[f.dataset][1])
    from pga_tf import data

    try:
        write(f.dataset, f.out, f.source_dir, counts, log=lambda line: print(line, flush=True))
    except (ValueError, data.DataError) as e:
        cli.fail(str(e))


def run() -> None:
    """`pga-standins` and `python -m pga_tf.tools.standins`: define the flags, then write."""
    from absl import flags

    from pga_tf import cli
    from pga_tf import data as _data

    flags.DEFINE_enum("dataset", "cifar10", tuple(RENDER), "Which stand-in to write.")
    flags.DEFINE_string("out", None, "Output directory (IDX files for --data_dir).")
    flags.DEFINE_string("source_dir", _data.FASHION_MNIST_DEBIAN_DIR, "Fashion-MNIST IDX files.")
    flags.DEFINE_integer("train_count", 0, "Training images (0: 60000 for cifar10, 10000 for celeb_a).", lower_bound=0)
    flags.DEFINE_integer("test_count", 0, "Test images (0: 10000 for cifar10, 2000 for celeb_a).", lower_bound=0)
    flags.mark_flag_as_required("out")
    cli.forbid_flag_like_values()
    cli.run(main, (OSError,), doc=__doc__, command="python -m pga_tf.tools.standins")


if __name__ == "__main__":
    from pga_tf import console

    console.install()
    run()
