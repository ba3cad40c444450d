"""An image folder with clutter beside the images: hidden folders and files (Jupyter's
.ipynb_checkpoints/, macOS's ._name AppleDouble files) are not data, symbolic links are followed,
and a link to nothing is named as such."""

import os

import numpy as np
import pytest
from PIL import Image

from pga_tf import data


def _pngs(folder, names, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(os.path.join(folder, name))


@pytest.fixture
def cluttered(tmp_path):
    root = tmp_path / "folder"
    train = root / "train"
    _pngs(train, [f"img_{i:04d}.png" for i in range(20)])
    _pngs(train / ".ipynb_checkpoints", [f"img_{i:04d}-checkpoint.png" for i in range(5)])
    (train / "._img_0001.png").write_bytes(b"\x00\x05\x16\x07AppleDouble resource fork")
    (train / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    _pngs(tmp_path / "elsewhere", ["extra_0.png", "extra_1.png", "extra_2.png"], seed=1)
    os.symlink(tmp_path / "elsewhere", train / "linked")
    os.symlink(train, train / "loop")  # a link back up the tree: read once
    return str(root)


def _images_on_disk(train):
    """The reference count: the visible PNGs written, through the one real linked folder."""
    visible = [f for f in os.listdir(train) if f.endswith(".png") and not f.startswith(".")]
    return len(visible) + len(os.listdir(os.path.join(train, "linked")))


def test_hidden_files_are_not_data_and_links_are_followed(cluttered):
    expected = _images_on_disk(os.path.join(cluttered, "train"))
    assert data.num_examples("mnist", "train", cluttered) == expected
    images = list(data.load_images("mnist", "train", cluttered).as_numpy_iterator())
    assert len(images) == expected  # the AppleDouble file was not decoded
    line = data.describe("mnist", "train", cluttered)
    assert f"{expected} train images" in line and os.path.join(cluttered, "train") in line


def test_a_dangling_link_is_named_as_such(cluttered):
    link = os.path.join(cluttered, "train", "img_9999.png")
    os.symlink(os.path.join(cluttered, "gone.png"), link)
    with pytest.raises(data.BadImages, match="img_9999.png is a symbolic link to .*gone.png, which does not exist"):
        data.num_examples("mnist", "train", cluttered)
