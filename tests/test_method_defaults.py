"""`train.py --method=<m>` with no flagfile trains every method: its defaults carry the optimiser
and learning rate of its own flagfiles, and a few dozen steps from them lower its losses."""

import math
import os
import shlex

import numpy as np
import pytest
from absl import flags

from pga_tf import cli, config
from tests.helpers import ROOT, parse

if "method" not in flags.FLAGS:
    cli.define_train_flags()


def _flagfile_optimiser(method, dataset):
    """The optimiser and lr a flagfile sets, or the Config defaults it leaves in place."""
    found = {"optimizer": config.Config.optimizer, "lr": config.Config.lr}
    with open(os.path.join(ROOT, "flags", f"{method}_{dataset}.cfg")) as f:
        for line in f:
            for arg in shlex.split(line, comments=True):
                name, _, value = arg.lstrip("-").partition("=")
                if name in found:
                    found[name] = float(value) if name == "lr" else value
    return found


@pytest.mark.parametrize("method", config.method_names())
def test_a_methods_defaults_carry_its_flagfiles_optimiser(method):
    mnist, fashion = (_flagfile_optimiser(method, d) for d in ("mnist", "fashion_mnist"))
    assert mnist == fashion
    cfg = parse([f"--method={method}"])
    assert {"optimizer": cfg.optimizer, "lr": cfg.lr} == mnist
    # A flag still wins.
    assert parse([f"--method={method}", "--lr=0.5", "--optimizer=sgd"]).lr == 0.5


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    """64 images of a bright disc at random places on a dark ground: unlike noise, an
    autoencoder's reconstruction keeps improving past the mean image."""
    from tests.helpers import write_idx

    d = tmp_path_factory.mktemp("discs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(7, 21, (80, 2))
    images = np.stack([255 * ((yy - cy) ** 2 + (xx - cx) ** 2 < 36) for cy, cx in centres])
    write_idx(d / "train-images-idx3-ubyte.gz", images[:64])
    write_idx(d / "t10k-images-idx3-ubyte.gz", images[64:])
    return str(d)


@pytest.mark.slow_inproc
def test_every_method_trains_from_its_defaults_alone(shapes_dir):
    import tensorflow as tf

    from pga_tf import data
    from pga_tf.training import trainer as trainer_lib

    idx_dir = shapes_dir

    failures = []
    for method in config.method_names():
        # Only the run's length and size: optimiser, lr and coefficients are the method's.
        cfg = parse([f"--method={method}", "--batch_size=8", "--stage2_width=64"])
        tf.keras.utils.set_random_seed(0)
        trainer = trainer_lib.Trainer(
            cfg, (28, 28, 1), main_steps=30, train_images=lambda: data.load_images("mnist", "train", idx_dir)
        )
        ds = data.make_train_dataset("mnist", cfg.batch_size, data_dir=idx_dir, seed=0)
        iterator = iter(trainer.strategy.experimental_distribute_dataset(ds))
        try:
            blocks = [trainer.train_steps(iterator, 10) for _ in range(3)]
        except trainer_lib.NonFiniteLoss as e:
            failures.append(f"{method}: {e}")
            continue
        first, last = blocks[0], blocks[-1]
        if not all(math.isfinite(v) for b in blocks for v in b.values()):
            failures.append(f"{method}: non-finite {blocks}")
        elif not last["img_rec"] < first["img_rec"]:
            failures.append(f"{method}: img_rec {first['img_rec']:.4g} -> {last['img_rec']:.4g}")
    assert not failures, failures
