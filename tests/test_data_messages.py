"""Every "nothing found" of the data loaders names what was looked for (IDX files by name, image
files by extension, the TFDS tree) and where (the directory, whether subfolders were searched),
and suggests a subfolder that holds the data."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pga_tf import data
from pga_tf.evaluation import classifier
from tests.helpers import write_idx

IDX_NAMES = ("train-images-idx3-ubyte[.gz]", "t10k-images-idx3-ubyte[.gz]")


@pytest.fixture
def above(tmp_path) -> str:
    """A directory whose subfolder fashion-mnist/ holds the IDX files: --data_dir one level too high."""
    sub = tmp_path / "datasets" / "fashion-mnist"
    sub.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(sub / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (8, 28, 28)))
    write_idx(sub / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 28, 28)))
    return str(tmp_path / "datasets")


def _message(dataset: str, split: str, data_dir: str) -> str:
    with pytest.raises(data.DataError) as caught:
        data.check(dataset, split, data_dir)
    return str(caught.value)


def test_train_split_names_what_where_and_the_subfolder(above):
    message = _message("fashion_mnist", "train", above)
    assert f"no fashion_mnist data in {above}" in message
    assert all(name in message for name in IDX_NAMES), message
    assert ".png/.jpg/.jpeg/.bmp" in message and "DIR and all its subfolders" in message
    assert "DIR/fashion_mnist/<version>/ with dataset_info.json" in message
    assert message.endswith(f"(did you mean --data_dir={os.path.join(above, 'fashion-mnist')}?)")


def test_test_split_names_its_test_subfolder(above):
    message = _message("fashion_mnist", "test", above)
    assert f"no fashion_mnist data for the test split in {above}" in message
    assert "DIR/test/ and its subfolders" in message and all(name in message for name in IDX_NAMES)
    assert f"did you mean --data_dir={os.path.join(above, 'fashion-mnist')}?" in message


def test_no_suggestion_without_a_subfolder_holding_data(tmp_path):
    (tmp_path / "notes").mkdir()
    message = _message("mnist", "train", str(tmp_path))
    assert "found notes/" in message and "did you mean" not in message


def test_the_same_message_from_the_pipelines(above):
    with pytest.raises(data.DataError, match="did you mean --data_dir="):
        data.num_examples("fashion_mnist", "train", above)


def test_classifier_names_the_label_files_and_where(tmp_path, above):
    with pytest.raises(data.DataError) as caught:
        classifier.check_data("fashion_mnist", str(tmp_path / "nope"))
    message = str(caught.value)
    assert f"data_dir {tmp_path / 'nope'} does not exist" in message
    assert "train-labels-idx1-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]" in message
    with pytest.raises(data.DataError, match="did you mean --data_dir="):
        classifier.check_data("fashion_mnist", above)
    sub = os.path.join(above, "fashion-mnist")
    with pytest.raises(data.DataError, match=f"{sub} has no train-labels-idx1-ubyte"):
        classifier.check_data("fashion_mnist", sub)


def test_an_empty_slice_is_refused_by_the_check(above):
    with pytest.raises(data.DataError, match=r"split train\[:-100\] of fashion_mnist is empty"):
        data.check("fashion_mnist", "train[:-100]", os.path.join(above, "fashion-mnist"))
