"""Paths that are not valid UTF-8 (a Latin-1 byte in a name): images with such names are read,
named escaped when bad; a run dir or export dir with one is refused before anything is written."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pga_tf import config as config_lib
from pga_tf import data
from tests.helpers import ROOT

LATIN1 = os.fsdecode(b"caf\xe9")  # "café" in Latin-1: not UTF-8, held as a surrogate escape


def _png(path, value):
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path, format="PNG")


def test_images_with_non_utf8_names_are_read(tmp_path):
    d = str(tmp_path)
    _png(os.path.join(d, "a.png"), 10)
    _png(os.path.join(d, LATIN1 + ".png"), 200)
    assert data.num_examples("cifar10", "train", d) == 2
    batch = data.fixed_batch("cifar10", 2, "train", d)
    got = sorted(np.rint((batch[:, 0, 0, 0] + 1) * 127.5).astype(int).tolist())
    assert got == [10, 200]
    assert list(data.make_train_dataset("cifar10", 2, d, seed=0, repeat=False))[0].shape == (2, 32, 32, 3)


def test_a_bad_image_with_a_non_utf8_name_is_named_escaped(tmp_path):
    d = str(tmp_path)
    _png(os.path.join(d, "a.png"), 10)
    with open(os.path.join(d, LATIN1 + ".png"), "wb") as f:
        f.write(b"not a png")
    with pytest.raises(data.BadImages) as e:
        data.load_images("cifar10", "train", d)
    assert "caf\\xe9.png: cannot decode it" in str(e.value)
    str(e.value).encode("utf-8")  # printable as it is


def test_check_path_encoding():
    config_lib.check_path_encoding("run_dir", "runs/café")  # UTF-8 é is fine
    with pytest.raises(ValueError, match=r"--run_dir runs/caf\\xe9 is not valid UTF-8"):
        config_lib.check_path_encoding("run_dir", "runs/" + LATIN1)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "program, flag", [("train.py", "--run_dir"), ("export_savedmodel.py", "--export_dir"), ("evaluate.py", "--run_dir")]
)
def test_a_non_utf8_output_path_is_refused_before_anything_is_written(tmp_path, program, flag):
    target = os.path.join(str(tmp_path), LATIN1)
    args = [sys.executable, program, f"{flag}={target}"]
    if program == "export_savedmodel.py":
        args.append(f"--run_dir={tmp_path}")
    proc = subprocess.run(
        args, cwd=ROOT, capture_output=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    err = proc.stderr.decode("utf-8", "backslashreplace")
    assert proc.returncode != 0 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "is not valid UTF-8" in last and "caf\\xe9" in last, err
    assert not os.path.exists(target)
