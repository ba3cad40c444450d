"""Feature extractors (domain classifier file + checksum, Inception plumbing with random weights)
and the on-disk cache of real-data statistics."""

import hashlib
import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from pga_tf import samplers
from pga_tf.evaluation import classifier, features, fid
from tests.helpers import write_idx


def idx_dataset(directory, n_train=40, n_test=30, seed=0):
    """A tiny MNIST-format dataset with labels in `directory`."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(os.path.join(directory, f"{stem}-images-idx3-ubyte.gz"), rng.integers(0, 256, (n, 28, 28)))
        write_idx(os.path.join(directory, f"{stem}-labels-idx1-ubyte.gz"), rng.integers(0, 10, (n,)))
    return str(directory)


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    """An untrained classifier saved the way `python -m pga_tf.evaluation.classifier` saves one."""
    tf.keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("clf")
    path = classifier.save(
        classifier.build((28, 28, 1)), str(out), "tiny_cnn", {"dataset": "fashion_mnist", "test_accuracy": 0.1}
    )
    return path


def test_classifier_file_loads_with_its_checksum(saved_classifier):
    meta = json.loads(pathlib.Path(classifier.metadata_path(saved_classifier)).read_text())
    assert meta["sha256"] == classifier.sha256(saved_classifier)
    ex = features.classifier_extractor(saved_classifier)
    assert (ex.name, ex.kind, ex.fid_name, ex.kid_name) == ("tiny_cnn", "classifier", "FID-tiny_cnn", "KID-tiny_cnn")
    assert ex.checksum == meta["sha256"] and ex.feature_dim == classifier.FEATURE_DIM
    images = np.random.default_rng(0).uniform(-1, 1, (5, 28, 28, 1)).astype(np.float32)
    feats = ex.of_array(images)
    assert feats.shape == (5, classifier.FEATURE_DIM) and feats.dtype == np.float32
    # The features are the saved model's penultimate layer.
    import keras

    model = keras.models.load_model(saved_classifier)
    want = keras.Model(model.inputs, model.get_layer("features").output)(images)
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(features.FeatureError, match="takes 28x28x1 images"):
        ex(np.zeros((2, 32, 32, 3), np.float32))


def test_tampered_or_incomplete_classifier_is_a_feature_error(saved_classifier, tmp_path):
    tampered = str(tmp_path / "tiny_cnn.keras")
    blob = bytearray(pathlib.Path(saved_classifier).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    pathlib.Path(tampered).write_bytes(bytes(blob))
    with pytest.raises(features.FeatureError, match="has no tiny_cnn.json"):
        features.classifier_extractor(tampered)  # no JSON beside it yet
    with open(classifier.metadata_path(saved_classifier)) as f:
        pathlib.Path(classifier.metadata_path(tampered)).write_text(f.read())
    with pytest.raises(features.FeatureError, match="checksum mismatch"):
        features.classifier_extractor(tampered)

    with pytest.raises(features.FeatureError, match="no domain classifier"):
        features.classifier_extractor(str(tmp_path / "missing.keras"))
    pathlib.Path(classifier.metadata_path(tampered)).write_text("{not json")
    with pytest.raises(features.FeatureError, match="tiny_cnn.json is not valid JSON"):
        features.classifier_extractor(tampered)


def test_make_extractor_refuses_a_classifier_of_another_dataset(saved_classifier):
    with pytest.raises(features.FeatureError, match="trained on fashion_mnist, not mnist"):
        features.make_extractor("classifier", "mnist", saved_classifier)


def test_inception_plumbing_with_random_weights():
    ex = features.make_extractor("inception", "fashion_mnist", inception_weights="random")
    ex.batch_size = 2
    assert ex.name == "Inception-random" and ex.fid_name == "FID-Inception-random"
    assert ex.kind == "inception" and ex.feature_dim == 2048 and len(ex.checksum) == 64
    grey = np.random.default_rng(0).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
    feats = ex.of_array(grey)  # two batches: 2 + 1
    assert feats.shape == (3, 2048) and np.all(np.isfinite(feats)) and ex.calls == 2
    colour = features.inception_preprocess(np.zeros((1, 32, 32, 3), np.float32))
    assert colour.shape == (1, 299, 299, 3)
    with pytest.raises(features.FeatureError, match="does not exist"):
        features.inception_extractor(weights="/nonexistent/inception_notop.h5")


def _counting_extractor(checksum="abc"):
    # Per-image mean and a few pixels: cheap, deterministic features.
    fn = lambda x: tf.concat([tf.reduce_mean(x, [1, 2]), tf.reshape(x, [-1, 784])[:, ::100]], 1)  # noqa: E731
    return features.Extractor("counting", "classifier", checksum, 9, fn, image_shape=(28, 28, 1), batch_size=8)


def test_real_statistics_are_cached_on_disk(tmp_path):
    data_dir = idx_dataset(tmp_path / "data")
    cache = fid.StatsCache(str(tmp_path / "cache"))
    ex = _counting_extractor()
    first = fid.real_stats(ex, "fashion_mnist", 20, "test", data_dir, cache)
    assert ex.calls == 3 and first.n == 20  # 8 + 8 + 4
    logs = []
    again = fid.real_stats(ex, "fashion_mnist", 20, "test", data_dir, cache, log=logs.append)
    assert ex.calls == 3, "the second call recomputed the features"
    assert "cached" in logs[0]
    np.testing.assert_array_equal(again.activations, first.activations)
    np.testing.assert_allclose(again.sigma, first.sigma)

    # Each part of the key matters: N, split, the extractor's weights, the images themselves.
    fid.real_stats(ex, "fashion_mnist", 10, "test", data_dir, cache)
    assert ex.calls == 5
    fid.real_stats(ex, "fashion_mnist", 20, "train", data_dir, cache)
    assert ex.calls == 8
    other = _counting_extractor(checksum="def")
    fid.real_stats(other, "fashion_mnist", 20, "test", data_dir, cache)
    assert other.calls == 3
    changed = idx_dataset(tmp_path / "data2", seed=1)
    fid.real_stats(ex, "fashion_mnist", 20, "test", changed, cache)
    assert ex.calls == 11
    # More than the split holds: capped at the split (30), and cached under that N.
    assert fid.real_stats(ex, "fashion_mnist", 1000, "test", data_dir, cache).n == 30
    # No cache directory: always computed.
    nocache = _counting_extractor()
    for _ in range(2):
        fid.real_stats(nocache, "fashion_mnist", 20, "test", data_dir, fid.StatsCache(None))
    assert nocache.calls == 6


@pytest.mark.parametrize(
    "damage", ["cut short", "another entry's shapes", "non-finite", "not a zip", "another entry", "a .npy"]
)
def test_a_damaged_cache_entry_is_computed_again_with_a_warning_never_used(tmp_path, damage):
    data_dir = idx_dataset(tmp_path / "data")
    cache = fid.StatsCache(str(tmp_path / "cache"))
    ex = _counting_extractor()
    first = fid.real_stats(ex, "fashion_mnist", 20, "test", data_dir, cache)
    (path,) = [p for p in (tmp_path / "cache").iterdir() if p.suffix == ".npz"]
    if damage == "cut short":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "not a zip":
        path.write_bytes(b"not a zip")
    elif damage == "a .npy":  # np.save under the entry's name: np.load gives an array, not a file
        with open(path, "wb") as f:
            np.save(f, first.activations)
    elif damage == "another entry":  # same shapes (the train split's 20), another key
        fid.real_stats(_counting_extractor(), "fashion_mnist", 20, "train", data_dir, cache)
        (other,) = [p for p in (tmp_path / "cache").iterdir() if p.suffix == ".npz" and p != path]
        path.write_bytes(other.read_bytes())
    else:  # a readable file whose arrays no extractor of these 20 images makes
        a = first.activations[:10] if damage == "another entry's shapes" else first.activations.copy()
        a[0, 0] = np.nan if damage == "non-finite" else a[0, 0]
        np.savez(path, activations=a, mu=a.mean(0), sigma=np.cov(a, rowvar=False))
    logs = []
    again = fid.real_stats(ex, "fashion_mnist", 20, "test", data_dir, cache, log=logs.append)
    assert ex.calls == 6, "the damaged entry was used"
    assert logs[0].startswith(f"warning: the cached real statistics {path} ") and "computing them again" in logs[0]
    np.testing.assert_array_equal(again.activations, first.activations)
    # Written afresh: the next call reads it without a warning.
    logs.clear()
    fid.real_stats(ex, "fashion_mnist", 20, "test", data_dir, cache, log=logs.append)
    assert ex.calls == 6 and "cached" in logs[0]


def test_fid_callback_writes_tensorboard_scalars_at_multiples(tmp_path):
    from types import SimpleNamespace

    data_dir = idx_dataset(tmp_path / "data")
    ex = _counting_extractor()
    logs = []
    cb = fid.FIDCallback(
        ex, "fashion_mnist", samplers.PriorSampler(3), every=50, num_samples=16, data_dir=data_dir, log=logs.append
    )
    decoder = lambda z, training: tf.tanh(tf.reshape(tf.tile(z, [1, 262])[:, :784], [-1, 28, 28, 1]))  # noqa: E731
    trainer = SimpleNamespace(decoder=decoder)
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    for step in (10, 20, 40, 55, 60, 100, 110, 140, 150):  # block ends; 55 crosses 50 late
        cb(step, trainer, writer)
    assert [s for s, _ in cb.history] == [55, 100, 150]
    assert all(np.isfinite(v) for _, v in cb.history)
    assert "FID-counting" in logs[-1]
    writer.flush()
    tags = []
    for event_file in tf.io.gfile.glob(str(tmp_path / "tb" / "*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags += [(event.step, v.tag) for v in event.summary.value]
    assert tags == [(55, "eval/FID-counting"), (100, "eval/FID-counting"), (150, "eval/FID-counting")]


def test_a_runs_recorded_features_apply_only_when_no_feature_flag_is_given(tmp_path, monkeypatch):
    run_dir = str(tmp_path / "run")
    default = features.Choice()
    assert features.for_run(default, False, run_dir, "fashion_mnist") == default  # nothing recorded
    monkeypatch.chdir(tmp_path)
    os.makedirs("clf")
    pathlib.Path("clf/mine.keras").write_bytes(b"weights A")
    features.record(run_dir, features.Choice("classifier", "clf/mine.keras"), "fashion_mnist")
    used = features.Choice("classifier", str(tmp_path / "clf" / "mine.keras"), "imagenet")  # absolute
    assert features.recorded(run_dir) == (used, hashlib.sha256(b"weights A").hexdigest())
    monkeypatch.chdir("/")  # another working directory: the record still names the file
    assert features.for_run(default, False, run_dir, "fashion_mnist") == used
    given = features.Choice("inception", "", "random")
    assert features.for_run(given, True, run_dir, "fashion_mnist") == given  # a flag on the command line wins
    pathlib.Path(run_dir, features.RECORD_FILE).write_text("{not json")  # damaged: refused, not ignored
    with pytest.raises(features.FeatureError, match="features.json is not valid JSON"):
        features.for_run(default, False, run_dir, "fashion_mnist")


def test_a_recorded_classifier_that_moved_or_changed_is_refused_and_a_resume_keeps_its_curves(tmp_path):
    run_dir, mine, other = str(tmp_path / "run"), tmp_path / "mine.keras", tmp_path / "other.keras"
    mine.write_bytes(b"weights A")
    other.write_bytes(b"weights B")
    features.record(run_dir, features.Choice("classifier", str(mine)), "fashion_mnist")
    same = features.Choice("classifier", str(mine))
    assert features.for_run(same, True, run_dir, "fashion_mnist", same_curve=True) == same
    copy = tmp_path / "copy.keras"  # the same file elsewhere: the same features
    copy.write_bytes(b"weights A")
    moved = features.Choice("classifier", str(copy))
    assert features.for_run(moved, True, run_dir, "fashion_mnist", same_curve=True) == moved
    with pytest.raises(features.FeatureError, match="would put two feature extractors' FIDs on one curve"):
        features.for_run(features.Choice("classifier", str(other)), True, run_dir, "fashion_mnist", same_curve=True)
    with pytest.raises(features.FeatureError, match="would put two"):
        features.for_run(features.Choice("inception", "", "random"), True, run_dir, "fashion_mnist", same_curve=True)
    mine.write_bytes(b"weights C")  # retrained in place
    with pytest.raises(features.FeatureError, match=r"is not what this run's FID curve used \(sha256"):
        features.for_run(features.Choice(), False, run_dir, "fashion_mnist")
    mine.unlink()
    with pytest.raises(features.FeatureError, match=f"is not at {mine} any more; pass --classifier="):
        features.for_run(features.Choice(), False, run_dir, "fashion_mnist")


def test_a_classifier_saved_again_replaces_both_files_and_leaves_no_temporary_one(tmp_path):
    tf.keras.utils.set_random_seed(1)
    first = classifier.save(classifier.build((28, 28, 1)), str(tmp_path), "c", {"dataset": "fashion_mnist"})
    old = json.load(open(classifier.metadata_path(first)))
    with pytest.raises(ValueError, match="exists .* pass --overwrite"):
        classifier.check_out(str(tmp_path), "c")
    classifier.check_out(str(tmp_path), "c", overwrite=True)
    tf.keras.utils.set_random_seed(2)
    path = classifier.save(classifier.build((28, 28, 1)), str(tmp_path), "c", {"dataset": "fashion_mnist"})
    new = json.load(open(classifier.metadata_path(path)))
    assert new["sha256"] != old["sha256"] and new["sha256"] == classifier.sha256(path)
    assert sorted(os.listdir(tmp_path)) == ["c.json", "c.keras"]  # no temporary file left
