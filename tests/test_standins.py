"""The stand-in CIFAR-10 and CelebA images (pga_tf/tools/standins.py) against hand-made garments."""

import numpy as np
import pytest

from pga_tf.tools import standins


def _garments(n=4):
    """n garments: a white 10x10 square at (9, 9) on black, labels 0..n-1."""
    g = np.zeros((n, 28, 28), np.uint8)
    g[:, 9:19, 9:19] = 255
    return g, np.arange(n, dtype=np.uint8)


def test_cifar10_garment_is_padded_and_tinted_by_its_class():
    grey, labels = _garments()
    grey[1, 9:19, 9:19] = 128  # half-bright
    out = standins.render_cifar10(grey, labels)
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.uint8
    want = np.rint(standins.CLASS_COLOURS[0] * 255)
    np.testing.assert_array_equal(out[0, 11:21, 11:21], np.broadcast_to(want, (10, 10, 3)))  # moved by the pad
    np.testing.assert_array_equal(out[1, 15, 15], np.rint(128 / 255 * standins.CLASS_COLOURS[1] * 255))
    assert out[:, :11].max() == 0 and out[:, :, :2].max() == 0  # black outside the garment
    assert len({tuple(c) for c in standins.CLASS_COLOURS}) == 10  # ten distinct colours


def test_celeb_a_garment_fills_the_crop_that_the_pipeline_takes(tmp_path):
    from pga_tf import data

    grey, labels = _garments(2)
    raw = standins.render_celeb_a(grey, labels)
    assert raw.shape == (2, 218, 178, 3)
    # The garment's square (rows 9..18 of 28) lands at 4x inside the 108x108 centre crop.
    top, left = (218 - 108) // 2, (178 - 108) // 2
    np.testing.assert_array_equal(raw[0, top + 60, left + 60], np.rint(standins.CLASS_COLOURS[0] * 255))
    assert raw[0, 0, 0].max() < 20 and raw[0, -1, 0].max() > 50  # the background gradient
    # Through pga_tf.data's crop and resize: the 64x64 image's centre holds the class colour.
    img = data.preprocess_fn("celeb_a")(raw[1]).numpy()
    assert img.shape == (64, 64, 3)
    np.testing.assert_allclose((img[32, 32] + 1) * 127.5, standins.CLASS_COLOURS[1] * 255, atol=2)


def test_written_files_read_back_as_the_dataset(tmp_path):
    from pga_tf import data

    src = _source_dir(tmp_path)
    grey, labels = _garments(6)
    out = tmp_path / "cifar10"
    assert standins.write("cifar10", str(out), src, (5, 3), log=lambda s: None) == {"train": 5, "test": 3}
    assert data.num_examples("cifar10", "train", str(out)) == 5
    batch = data.fixed_batch("cifar10", 3, "test", str(out))
    np.testing.assert_allclose((batch + 1) * 127.5, standins.render_cifar10(grey[:3], labels[:3]), atol=1e-3)
    np.testing.assert_array_equal(data.read_idx(str(out / "t10k-labels-idx1-ubyte.gz")), labels[:3])
    with pytest.raises(ValueError, match="7 train images asked for; the source has 6"):
        standins.write("cifar10", str(tmp_path / "x"), src, (7, 1), log=lambda s: None)
    assert not (tmp_path / "x").exists()  # checked before anything is made


def _source_dir(tmp_path):
    """Fashion-MNIST-format IDX files of _garments(6) in tmp_path/fashion (both splits)."""
    src = tmp_path / "fashion"
    src.mkdir()
    grey, labels = _garments(6)
    for stem in ("train", "t10k"):
        standins.write_idx(str(src / f"{stem}-images-idx3-ubyte.gz"), grey)
        standins.write_idx(str(src / f"{stem}-labels-idx1-ubyte.gz"), labels)
    return str(src)


def test_a_stand_in_is_written_again_in_place_but_never_over_other_files(tmp_path):
    src, quiet = _source_dir(tmp_path), (lambda s: None)
    out = tmp_path / "data"
    standins.write("celeb_a", str(out), src, (2, 2), log=quiet)
    standins.write("celeb_a", str(out), src, (3, 2), log=quiet)  # the same stand-in again: allowed
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"already holds a celeb_a stand-in; write the cifar10 stand-in"):
        standins.write("cifar10", str(out), src, (2, 2), log=quiet)
    (out / "classifier.keras").write_bytes(b"x")  # something a user keeps beside the data
    with pytest.raises(ValueError, match=r"already holds 1 file\(s\) no stand-in has, e.g. 'classifier.keras'"):
        standins.write("celeb_a", str(out), src, (2, 2), log=quiet)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == {**before, "classifier.keras": b"x"}  # the refusals changed nothing
    assert set(before) == set(standins.STANDIN_FILES) | {"README.txt"}
    mnist = tmp_path / "mnist"  # a directory of other IDX files (no stand-in README)
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    with pytest.raises(ValueError, match="already holds IDX files without a stand-in's README.txt"):
        standins.write("cifar10", str(mnist), src, (2, 2), log=quiet)
    assert (mnist / "train-images-idx3-ubyte.gz").read_bytes() == b"x"


@pytest.mark.parametrize("counts", [(0, 2), (2, -3)])
def test_counts_below_one_are_refused_before_the_directory_is_made(tmp_path, counts):
    with pytest.raises(ValueError, match="image counts must be at least 1"):
        standins.write("cifar10", str(tmp_path / "x"), _source_dir(tmp_path), counts, log=lambda s: None)
    assert not (tmp_path / "x").exists()


def test_an_out_that_cannot_be_a_directory_is_named(tmp_path):
    src = _source_dir(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("keep")
    with pytest.raises(ValueError, match=f"--out={afile} is a file, not a directory"):
        standins.write("cifar10", str(afile), src, (2, 2), log=lambda s: None)
    with pytest.raises(ValueError, match=f"--out={afile / 'x'}: {afile} is a file, not a directory"):
        standins.write("cifar10", str(afile / "x"), src, (2, 2), log=lambda s: None)
    assert afile.read_text() == "keep"
    with pytest.raises(ValueError, match=f"--source_dir={tmp_path / 'nope'} has no train-images"):
        standins.write("cifar10", str(tmp_path / "y"), str(tmp_path / "nope"), (2, 2), log=lambda s: None)
    assert not (tmp_path / "y").exists()


def test_a_write_stopped_halfway_can_be_run_again(tmp_path, monkeypatch):
    src, out = _source_dir(tmp_path), tmp_path / "data"

    def stop_at_the_labels(path, array):
        if "labels" in path:
            open(path + ".tmp", "wb").close()  # what a kill during gzip leaves
            raise KeyboardInterrupt
        real_write_idx(path, array)

    real_write_idx = standins.write_idx
    monkeypatch.setattr(standins, "write_idx", stop_at_the_labels)
    with pytest.raises(KeyboardInterrupt):
        standins.write("cifar10", str(out), src, (2, 2), log=lambda s: None)
    monkeypatch.undo()
    assert standins.write("cifar10", str(out), src, (2, 2), log=lambda s: None) == {"train": 2, "test": 2}
    with pytest.raises(ValueError, match="already holds a cifar10 stand-in"):
        standins.write("celeb_a", str(out), src, (2, 2), log=lambda s: None)
