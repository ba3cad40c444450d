"""A small domain classifier for MNIST-format data, whose penultimate layer is an offline FID feature.

Inception-v3 needs ImageNet weights that this machine cannot download, and its features say little
about 28x28 greyscale images anyway. This convnet is trained here, on the dataset's train split
(images and IDX labels), in a few CPU minutes:

  python -m pga_tf.evaluation.classifier --dataset=fashion_mnist --out=classifiers

writes classifiers/fashion_mnist_cnn.keras and, beside it, classifiers/fashion_mnist_cnn.json with
the file's sha256, the test accuracy and what the features are. `features.classifier_extractor`
checks the checksum before using the file, and reports name it: "FID-fashion_mnist_cnn".

Keras (and TensorFlow) load when a classifier is built, not on import: the program checks its
data first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import TYPE_CHECKING

import numpy as np

from pga_tf import data, jsonfile

if TYPE_CHECKING:
    import keras

FEATURE_LAYER = "features"
FEATURE_DIM = 128
FORMAT_VERSION = 1
# MNIST-style label files, per split.
_LABEL_STEMS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}


def default_name(dataset: str) -> str:
    return f"{dataset}_cnn"


def build(image_shape: tuple[int, int, int], num_classes: int = 10) -> keras.Model:
    """conv32-pool-conv64-pool-fc128 ("features")-fc(num_classes). Inputs are [-1, 1] images."""
    import keras

    x = inputs = keras.Input(image_shape, name="images")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(FEATURE_DIM, activation="relu", name=FEATURE_LAYER)(x)
    x = keras.layers.Dropout(0.3)(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="domain_classifier")


# ---------------------------------------------------------------------------------- data
def _label_dir(dataset: str, data_dir: str | None) -> str:
    info = data.DATASETS.get(dataset)
    if info is None:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(data.DATASETS)}")
    directory = data_dir or info.default_dir
    files = ", ".join(f"{stem}[.gz]" for stem in _LABEL_STEMS.values())
    if not directory:
        raise data.DataError(
            f"the classifier trains on MNIST-format IDX files with labels ({files}); {dataset} "
            "has no local copy: pass --data_dir=DIR holding them"
        )
    if not os.path.isdir(directory):
        raise data.DataError(
            f"data_dir {directory} does not exist or is not a directory (the classifier reads IDX files "
            f"with labels there: {files})"
        )
    return directory


def _label_path(dataset: str, split: str, data_dir: str | None) -> str:
    directory = _label_dir(dataset, data_dir)
    stem = os.path.join(directory, _LABEL_STEMS[split])
    path = next((p for p in (stem, stem + ".gz") if os.path.isfile(p)), None)
    if path is None:
        raise data.DataError(f"{directory} has no {_LABEL_STEMS[split]}[.gz]: the classifier needs the {split} labels")
    return path


def load_labels(dataset: str, split: str, data_dir: str | None = None) -> np.ndarray:
    """int64 class labels of `split` from the IDX label file beside the images."""
    path = _label_path(dataset, split, data_dir)
    labels = data.read_idx(path)
    if labels.ndim != 1:
        raise data.DataError(f"{path} is not a label file (shape {labels.shape})")
    return labels.astype(np.int64)


def check_data(dataset: str, data_dir: str | None = None) -> None:
    """DataError (one line) if the label files or the images of the train or test split are not
    where load_split reads them: without TensorFlow, so the program says it before loading it."""
    for split in ("train", "test"):
        data.check(dataset, split, _label_dir(dataset, data_dir))  # first: it names a subfolder that has them
        _label_path(dataset, split, data_dir)


def load_split(dataset: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All [-1, 1] images of `split` and their labels, as numpy arrays."""
    labels = load_labels(dataset, split, data_dir)
    ds = data.load_images(dataset, split, _label_dir(dataset, data_dir))
    images = np.concatenate(list(ds.batch(10000).as_numpy_iterator()))
    if len(images) != len(labels):
        raise data.DataError(f"{dataset} {split}: {len(images)} images but {len(labels)} labels")
    return images, labels


# ------------------------------------------------------------------------------- training
def train(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    epochs: int = 5,
    batch_size: int = 128,
    seed: int = 0,
    verbose: int = 0,
    num_classes: int | None = None,
) -> keras.Model:
    """A classifier fitted with Adam on the given [-1, 1] images."""
    import keras

    keras.utils.set_random_seed(seed)
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    model = build(train_images.shape[1:], num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_images, train_labels, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    return model


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata_path(model_path: str) -> str:
    """The JSON beside a classifier file: same stem, .json."""
    return os.path.splitext(model_path)[0] + ".json"


def save(model: keras.Model, out_dir: str, name: str, info: dict) -> str:
    """Write <out_dir>/<name>.keras and <name>.json (sha256, feature layer, `info`); returns the
    model path. Both are written beside their places and renamed into them, the JSON last: a
    reader never sees a partly written file, and a stop between the two renames leaves a
    checksum mismatch that every reader reports (features._classifier_file)."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name + ".keras")
    tmp_model = os.path.join(out_dir, f".{name}.tmp.keras")  # Keras saves only to *.keras
    # An uncompiled copy: the file then holds the weights only, not Adam's slots (3x smaller).
    bare = build(tuple(model.input_shape[1:]), int(model.output_shape[-1]))
    bare.set_weights(model.get_weights())
    bare.save(tmp_model)
    meta = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "file": os.path.basename(path),
        "sha256": sha256(tmp_model),
        "feature_layer": FEATURE_LAYER,
        "feature_dim": int(model.get_layer(FEATURE_LAYER).output.shape[-1]),
        "image_shape": [int(d) for d in model.input_shape[1:]],
        "input_range": [-1.0, 1.0],
        **info,
    }
    tmp = metadata_path(path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp_model, path)
    os.replace(tmp, metadata_path(path))
    return path


def check_name(name: str) -> str | None:
    """Why `name` cannot name a classifier file in --out (a path, or empty of a stem), or None."""
    if name in (".", "..") or "/" in name or os.sep in name or name.startswith("."):
        return f"--name={name!r} must be a file name without directories (it becomes <name>.keras in --out)"
    return None


def check_out(out_dir: str, name: str, overwrite: bool = False) -> None:
    """Refuse, before any training, an `out_dir` that cannot hold <name>.keras, or one that holds
    a classifier of that name already (runs' FIDs and cached statistics were computed with it)
    unless `overwrite`.

    Raises:
      ValueError: one line naming the flag.
    """
    problem = check_name(name)
    if problem:
        raise ValueError(problem)
    from pga_tf import config

    problem = config.output_path_problem("out", out_dir, directory=True)
    if problem:
        raise ValueError(problem)
    path = os.path.join(out_dir, name + ".keras")
    held = [p for p in (path, metadata_path(path)) if os.path.exists(p)]
    if held and not overwrite:
        raise ValueError(
            f"{held[0]} exists (FIDs computed with it would not compare with a new one's); "
            "pass --overwrite to replace it, or --name for another classifier"
        )


def train_and_save(
    dataset: str,
    out_dir: str,
    data_dir: str | None = None,
    name: str | None = None,
    epochs: int = 8,
    batch_size: int = 128,
    seed: int = 0,
    log=print,
    overwrite: bool = False,
) -> tuple[str, dict]:
    """Train on `dataset`'s train split, measure test accuracy, save; returns (path, metadata).

    Raises:
      ValueError: `out_dir`/`name` refused by check_out (before training).
    """
    name = name or default_name(dataset)
    check_out(out_dir, name, overwrite)
    t0 = time.time()
    x_train, y_train = load_split(dataset, "train", data_dir)
    x_test, y_test = load_split(dataset, "test", data_dir)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    log(f"training {name} on {len(x_train)} {dataset} train images for {epochs} epoch(s)")
    t1 = time.time()
    model = train(x_train, y_train, epochs, batch_size, seed, verbose=2, num_classes=num_classes)
    train_seconds = time.time() - t1
    acc = accuracy(model, x_test, y_test)
    info = dict(
        dataset=dataset,
        data_dir=data_dir or "",
        train_examples=len(x_train),
        test_examples=len(x_test),
        num_classes=num_classes,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        test_accuracy=acc,
        train_seconds=round(train_seconds, 1),
        total_seconds=round(time.time() - t0, 1),
    )
    path = save(model, out_dir, name, info)
    meta = jsonfile.read(metadata_path(path), "it was written just now; train again")
    log(
        f"test accuracy {acc:.4f}; trained in {train_seconds:.0f} s; wrote {path} and "
        f"{os.path.basename(metadata_path(path))} (sha256 {meta['sha256'][:12]}...)"
    )
    return path, meta


def main(argv) -> None:
    from absl import flags

    from pga_tf import cli

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        check_out(FLAGS.out, FLAGS.name or default_name(FLAGS.dataset), FLAGS.overwrite)
        check_data(FLAGS.dataset, FLAGS.data_dir or None)
    except (ValueError, data.DataError) as e:
        cli.fail(str(e))
    cli.quiet_tensorflow()
    train_and_save(
        FLAGS.dataset,
        FLAGS.out,
        FLAGS.data_dir or None,
        FLAGS.name or None,
        FLAGS.epochs,
        FLAGS.batch_size,
        FLAGS.seed,
        log=lambda s: print(s, flush=True),
        overwrite=FLAGS.overwrite,
    )


def _name_is_a_file_name(name: str) -> bool:
    from absl import flags

    problem = check_name(name)
    if problem:
        raise flags.ValidationError(problem)
    return True


def run() -> None:
    """`pga-classifier` and `python -m pga_tf.evaluation.classifier`: define the flags, then train
    and save. Only here, not on import: evaluation imports this module for its features."""
    from absl import flags

    from pga_tf import cli

    cli.define_classifier_flags()
    flags.register_validator("name", _name_is_a_file_name)
    cli.run(main, (data.DataError, ValueError, OSError), doc=__doc__, command="python -m pga_tf.evaluation.classifier")


if __name__ == "__main__":
    from pga_tf import console

    console.install()  # before TensorFlow loads: its harmless native lines stay off stderr
    run()
