"""Feature extractors for FID/KID: a domain classifier's penultimate layer, or Inception-v3's pool.

An `Extractor` maps [-1, 1] images (the pipelines' range) to feature vectors and carries what a
report and the real-statistics cache need: a display name ("Inception", or the classifier's name,
giving "FID-Inception" vs "FID-fashion_mnist_cnn") and a checksum of its weights.

`check` finds the files an extractor needs without TensorFlow (which loads when one is built), so
the programs report a missing or altered classifier before loading it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from pga_tf import config as config_lib
from pga_tf import jsonfile
from pga_tf.evaluation import classifier as classifier_lib

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

INCEPTION_SIZE = 299
INCEPTION_NAME = "Inception"


class FeatureError(Exception):
    """A user-caused problem with a feature extractor (missing, tampered, offline); one line."""


@dataclasses.dataclass
class Extractor:
    """[-1, 1] images -> [N, feature_dim] float32 features, in batches."""

    name: str  # "Inception" or the classifier's name
    kind: str  # "inception" or "classifier"
    checksum: str  # sha256 identifying the weights (cache key)
    feature_dim: int
    fn: Callable[[tf.Tensor], tf.Tensor]  # one batch of [-1, 1] images -> features
    image_shape: tuple[int, int, int] | None = None  # the only input shape accepted, if any
    batch_size: int = 250
    info: dict = dataclasses.field(default_factory=dict)  # extra fields for the report
    calls: int = 0  # batches run so far (the cache tests count them)

    @property
    def fid_name(self) -> str:
        return f"FID-{self.name}"

    @property
    def kid_name(self) -> str:
        return f"KID-{self.name}"

    def check_images(self, shape: tuple[int, ...]) -> None:
        if self.image_shape is not None and tuple(shape[1:]) != tuple(self.image_shape):
            want = "x".join(map(str, self.image_shape))
            raise FeatureError(f"{self.name} takes {want} images, got {'x'.join(map(str, shape[1:]))}")

    def __call__(self, images) -> np.ndarray:
        """Features of one batch of [-1, 1] images (numpy or tensor)."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images, tf.float32)
        self.check_images(images.shape)
        self.calls += 1
        return self.fn(images).numpy().astype(np.float32)

    def of_batches(self, batches: Iterable, total: int | None = None, desc: str = "features") -> np.ndarray:
        """Features of an iterable of image batches, concatenated, with a progress bar. Batches
        larger than `batch_size` are split (Inception at 299x299 wants small ones)."""
        from tqdm import tqdm

        out = []
        with tqdm(total=total, desc=desc, unit="img", disable=None, leave=False) as bar:
            for batch in batches:
                for i in range(0, len(batch), self.batch_size):
                    out.append(self(batch[i : i + self.batch_size]))
                    bar.update(len(out[-1]))
        if not out:
            return np.zeros([0, self.feature_dim], np.float32)
        return np.concatenate(out)

    def of_array(self, images: np.ndarray, desc: str = "features") -> np.ndarray:
        return self.of_batches([images], len(images), desc)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "checksum": self.checksum,
            "feature_dim": self.feature_dim,
            **self.info,
        }


def _sha256_file(path: str) -> str:
    return classifier_lib.sha256(path)


def _sha256_weights(model: keras.Model) -> str:
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(w.path.encode())
        digest.update(np.ascontiguousarray(w.numpy()).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- a run's own features
RECORD_FILE = "features.json"  # in a run dir: the features its training-time FID used


@dataclasses.dataclass(frozen=True)
class Choice:
    """What --features, --classifier and --inception_weights select."""

    kind: str = "classifier"
    classifier: str = ""  # "" for classifiers/<dataset>_cnn.keras
    inception_weights: str = "imagenet"

    def resolved(self, dataset: str) -> Choice:
        """The same features with their files as absolute paths (the default classifier named),
        so a record means one file whatever the directory a later command starts in."""
        if self.kind == "classifier":
            path = os.path.abspath(os.path.expanduser(self.classifier or default_classifier_path(dataset)))
            return dataclasses.replace(self, classifier=path)
        weights = _weights(self.inception_weights)
        if weights is None or weights == "imagenet":
            return self
        return dataclasses.replace(self, inception_weights=os.path.abspath(os.path.expanduser(weights)))

    def describe(self) -> str:
        return self.classifier if self.kind == "classifier" else f"Inception ({self.inception_weights})"


def identity(choice: Choice) -> str:
    """What makes two (resolved) choices the same features, found without TensorFlow: the sha256
    of the classifier or Inception weights file, or the weights' name ('imagenet', 'random')."""
    path = choice.classifier if choice.kind == "classifier" else _weights(choice.inception_weights)
    if path is None or path == "imagenet":
        return choice.inception_weights
    return _sha256_file(path) if os.path.isfile(path) else ""


def record(run_dir: str, choice: Choice, dataset: str) -> None:
    """Write `choice` (resolved, with its identity) into <run_dir>/features.json, atomically, so a
    resume and evaluate.py score the run with the features of its FID curve (see for_run)."""
    os.makedirs(run_dir, exist_ok=True)
    choice = choice.resolved(dataset)
    jsonfile.write(
        os.path.join(run_dir, RECORD_FILE), {**dataclasses.asdict(choice), "sha256": identity(choice)}, indent=1
    )


def recorded(run_dir: str) -> tuple[Choice, str] | None:
    """(the features a run's training-time FID used, their identity) as record wrote them; None
    if the run recorded none (trained without --fid_every, or before features.json existed).

    Raises:
      FeatureError: features.json is damaged (unreadable, cut short, edited into other fields):
        guessing the features then could put another extractor's FID beside the curve's.
    """
    path = os.path.join(run_dir, RECORD_FILE)
    if not os.path.lexists(path):
        return None
    fix = (
        "train.py writes it when the run's FID curve starts; to evaluate, pass the feature flags "
        "(--features, --classifier, --inception_weights); to resume, delete it (the flags' features "
        "are then recorded)"
    )
    body = jsonfile.read(path, fix, FeatureError)
    fields = {"kind": str, "classifier": str, "inception_weights": str, "sha256": str}
    for key, kind in fields.items():
        if not isinstance(body.get(key), kind):
            what = "lacks" if key not in body else f"has a JSON {jsonfile.kind(body[key])} for"
            raise FeatureError(f"{path} {what} {key!r}, not a string; {fix}")
    if body["kind"] not in config_lib.FEATURE_KINDS:
        raise FeatureError(f"{path} has kind {body['kind']!r}, not one of {', '.join(config_lib.FEATURE_KINDS)}; {fix}")
    return Choice(body["kind"], body["classifier"], body["inception_weights"]), body["sha256"]


def for_run(given: Choice, any_flag_given: bool, run_dir: str | None, dataset: str, same_curve: bool = False) -> Choice:
    """The features to score the run in `run_dir` with.

    With no feature flag on the command line (`any_flag_given` False), the ones its FID curve
    used (features.json), provided that file is still there and unchanged; else `given`. With
    `same_curve` (a resume that adds points to that curve), `given` must be those same features.

    Raises:
      FeatureError: the recorded classifier is missing or changed (its sha256), `same_curve`
        and `given` are other features than the curve's, or features.json is damaged.
    """
    if not run_dir or (any_flag_given and not same_curve):
        return given  # the record cannot change the answer: not read, so not checked either
    rec = recorded(run_dir)
    if rec is None:
        return given
    used, sha = rec
    if not any_flag_given:
        if used.kind == "classifier" and not os.path.isfile(used.classifier):
            raise FeatureError(
                f"the classifier of this run's FID curve ({RECORD_FILE}) is not at {used.classifier} any "
                "more; pass --classifier=<where it is now>"
            )
        now = identity(used)
        if sha and now != sha:
            raise FeatureError(
                f"{used.describe()} is not what this run's FID curve used (sha256 {now[:12]}... now, "
                f"{sha[:12]}... then; {RECORD_FILE}); pass the feature flags to score with it anyway"
            )
        return used
    if same_curve:
        want = given.resolved(dataset)
        now = identity(want)  # "": no such file, which check() reports as such
        if now and (want.kind, now) != (used.kind, sha):
            raise FeatureError(
                f"this run's FID curve used {used.describe()} ({RECORD_FILE}); resuming it with "
                f"{want.describe()} would put two feature extractors' FIDs on one curve: leave the "
                "feature flags out, or train into another --run_dir"
            )
    return given


def from_flags(flag_values, run_dir: str | None, dataset: str, same_curve: bool = False) -> Choice:
    """for_run on the command line's --features, --classifier and --inception_weights (absl
    FlagValues; a flag counts as given when the command line or a flagfile sets it)."""
    names = ("features", "classifier", "inception_weights")
    given = Choice(flag_values.features, flag_values.classifier, flag_values.inception_weights)
    return for_run(given, any(flag_values[n].present for n in names), run_dir, dataset, same_curve)


# --------------------------------------------------------------------------- domain classifier
def _classifier_file(path: str) -> tuple[str, dict, str]:
    """(path, metadata, sha256) of a classifier file saved by `pga_tf.evaluation.classifier`,
    checked without TensorFlow: FeatureError if it or its JSON is missing, or its sha256 differs
    from the JSON's (a modified or truncated file would give silently different FIDs)."""
    path = os.path.expanduser(path)
    meta_path = classifier_lib.metadata_path(path)
    if not os.path.isfile(path):
        raise FeatureError(
            f"no domain classifier at {path}; pass --classifier=<a .keras file>, train one with "
            f"`python -m pga_tf.evaluation.classifier --dataset=<dataset> --out={os.path.dirname(path) or '.'}` "
            "or pass --features=inception"
        )
    if not os.path.isfile(meta_path):
        raise FeatureError(
            f"{path} has no {os.path.basename(meta_path)} beside it (checksum, accuracy); "
            "retrain it with `python -m pga_tf.evaluation.classifier`"
        )
    fix = "retrain the classifier with `python -m pga_tf.evaluation.classifier` (its metadata is written with it)"
    meta = jsonfile.read(meta_path, fix, FeatureError)
    want = meta.get("sha256")
    if not isinstance(want, str):
        raise FeatureError(f"{meta_path} has no sha256 string (the classifier's checksum); {fix}")
    got = _sha256_file(path)
    if got != want:
        raise FeatureError(
            f"checksum mismatch for {path}: sha256 {got[:16]}... but {os.path.basename(meta_path)} "
            f"says {str(want)[:16]}...; the file was modified or corrupted: retrain it with "
            "`python -m pga_tf.evaluation.classifier ... --overwrite`"
        )
    return path, meta, got


def classifier_extractor(path: str, batch_size: int = 250) -> Extractor:
    """The penultimate ("features") layer of a classifier saved by `pga_tf.evaluation.classifier`
    (its file checked by _classifier_file)."""
    import keras
    import tensorflow as tf

    path, meta, got = _classifier_file(path)
    layer = meta.get("feature_layer", classifier_lib.FEATURE_LAYER)
    try:
        model = keras.models.load_model(path, compile=False)
        features = keras.Model(model.inputs, model.get_layer(layer).output)
    except Exception as e:  # Keras raises many types for an unreadable archive
        raise FeatureError(f"cannot load classifier {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None

    fn = tf.function(lambda x: features(x, training=False), reduce_retracing=True)
    info = {k: meta[k] for k in ("dataset", "test_accuracy", "epochs") if k in meta}
    info["path"] = path
    return Extractor(
        name=meta.get("name") or os.path.splitext(os.path.basename(path))[0],
        kind="classifier",
        checksum=got,
        feature_dim=int(features.output.shape[-1]),
        fn=fn,
        image_shape=tuple(int(d) for d in model.input_shape[1:]),
        batch_size=batch_size,
        info=info,
    )


def default_classifier_path(dataset: str, directory: str = "classifiers") -> str:
    return os.path.join(directory, classifier_lib.default_name(dataset) + ".keras")


# ---------------------------------------------------------------------------------- Inception
def inception_preprocess(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] images of any size, 1 or 3 channels -> 299x299x3 in [-1, 1] (Inception's range)."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    images = tf.image.resize(images, [INCEPTION_SIZE, INCEPTION_SIZE], method="bilinear")
    return tf.clip_by_value(images, -1.0, 1.0)


def _inception_weights(weights: str | None) -> str | None:
    """`weights` with a local file's path expanded; FeatureError if that file does not exist."""
    if weights not in (None, "imagenet"):
        weights = os.path.expanduser(weights)
        if not os.path.isfile(weights):
            raise FeatureError(f"Inception weights file {weights} does not exist")
    return weights


def inception_extractor(weights: str | None = "imagenet", batch_size: int = 50) -> Extractor:
    """keras.applications.InceptionV3 without its top, average-pooled: 2048 features.

    Args:
      weights: "imagenet" (Keras downloads the file once; needs network), a local .h5 path
        (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5), or None (random weights:
        only for testing the plumbing; its FIDs mean nothing).
    """
    import keras
    import tensorflow as tf

    weights = _inception_weights(weights)
    try:
        model = keras.applications.InceptionV3(
            include_top=False, pooling="avg", weights=weights, input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3)
        )
    except Exception as e:  # a failed download (URLError, OSError...), a wrong .h5 (ValueError)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = (
            (
                "; offline? pass --inception_weights=/path/to/inception_v3_weights_tf_dim_ordering_tf_"
                "kernels_notop.h5 or use --features=classifier"
            )
            if weights == "imagenet"
            else ""
        )
        raise FeatureError(f"cannot build InceptionV3 with weights={weights}: {first}{hint}") from None
    checksum = _sha256_file(weights) if weights not in (None, "imagenet") else _sha256_weights(model)
    name = INCEPTION_NAME if weights is not None else INCEPTION_NAME + "-random"
    fn = tf.function(lambda x: model(inception_preprocess(x), training=False), reduce_retracing=True)
    return Extractor(
        name=name,
        kind="inception",
        checksum=checksum,
        feature_dim=int(model.output.shape[-1]),
        fn=fn,
        batch_size=batch_size,
        info={"weights": weights or "random"},
    )


def check(kind: str, dataset: str, classifier_path: str = "", inception_weights: str | None = "imagenet") -> None:
    """FeatureError (one line) if make_extractor's files are missing or wrong, found without
    TensorFlow: the classifier (present, its JSON beside it, its checksum, trained on `dataset`)
    or a local Inception weights file. ValueError for an unknown `kind`."""
    if kind == "classifier":
        path, meta, _ = _classifier_file(classifier_path or default_classifier_path(dataset))
        trained_on = meta.get("dataset")
        if trained_on and trained_on != dataset:
            name = meta.get("name") or os.path.splitext(os.path.basename(path))[0]
            raise FeatureError(
                f"classifier {name} was trained on {trained_on}, not {dataset}; pass "
                f"--classifier for a {dataset} classifier"
            )
    elif kind == "inception":
        _inception_weights(_weights(inception_weights))
    else:
        raise ValueError(f"unknown features {kind!r}; valid: classifier, inception")


def _weights(inception_weights: str | None) -> str | None:
    return None if inception_weights in (None, "", "random") else inception_weights


def make_extractor(
    kind: str,
    dataset: str,
    classifier_path: str = "",
    inception_weights: str | None = "imagenet",
    batch_size: int = 250,
) -> Extractor:
    """The extractor a --features/--classifier/--inception_weights combination asks for
    (inception_weights "random": untrained Inception, to check the plumbing offline); its files
    checked first (check)."""
    check(kind, dataset, classifier_path, inception_weights)
    if kind == "classifier":
        return classifier_extractor(classifier_path or default_classifier_path(dataset), batch_size)
    return inception_extractor(_weights(inception_weights), batch_size=min(batch_size, 50))
