"""A --data_dir that holds no data of a kind we read (an empty one, a TFDS tree named or laid
out wrong): one line naming every kind looked for and what the directory holds instead."""

import os

import pytest

from pga_tf import data

KINDS = ("IDX files", "image files", "DIR/mnist/<version>/ with dataset_info.json")


def _tree(root, layout):
    for path, text in layout.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full) if text is not None else full, exist_ok=True)
        if text is not None:
            with open(full, "w") as f:
                f.write(text)


LAYOUTS = {
    "empty": ({}, ["an empty directory"]),
    "version without metadata": ({"mnist/3.0.1": None}, ["mnist/ holding 3.0.1/ (no dataset_info.json)"]),
    "tree under another name": ({"MNIST/3.0.1/dataset_info.json": "{}"}, ["MNIST/"]),
    "broken metadata beside a bare version": (
        {"mnist/3.0.0": None, "mnist/3.0.1/dataset_info.json": "{}"},
        ["3.0.0/ (no dataset_info.json)", "3.0.1/ (with dataset_info.json)"],
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_data_dir_without_data_names_every_kind_looked_for_and_what_it_holds(tmp_path, capfd, layout):
    files, found = LAYOUTS[layout]
    _tree(str(tmp_path), files)
    with pytest.raises(data.DataError) as caught:
        data.num_examples("mnist", "train", str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    assert all(kind in message for kind in KINDS), message
    assert all(f in message for f in found), message
    assert "Variant folder" not in capfd.readouterr().err  # TFDS's own warning lines
