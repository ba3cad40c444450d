"""Latent samplers: everything that turns a seed into latent codes z, in one interface.

A sampler is a `tf.Module` whose `sample(num_samples, seed)` returns float32 codes
[num_samples, z_dim], drawn statelessly: the same seed gives the same codes in any process,
eagerly, inside a `tf.function` and in a loaded SavedModel. The sample grids, evaluate.py and the
export's `sample` signature all take a sampler, so a sampler is written once and every consumer
agrees on what "samples of this run" means.

  prior      z ~ N(0, I), the generator's prior (every method's default)
  gmm        ex-post density estimation: a Gaussian mixture fitted on the aggregate posterior
             (the training codes E(x)), as in RAE (Ghosh et al., ICLR 2020, sec. 4)
  two_stage  u ~ N(0, I) through a second-stage VAE's decoder (2-Stage VAE, Dai & Wipf, ICLR 2019)
"""

from __future__ import annotations

import tensorflow as tf

SAMPLERS = ("prior", "gmm", "two_stage")


class LatentSampler(tf.Module):
    """Base class: `sample(num_samples: int32 [], seed: int64 []) -> float32 [N, z_dim]`."""

    kind = "base"  # the name reports, TensorBoard tags and filenames carry (FID-<features>-<kind>)

    def __init__(self, z_dim: int, name: str | None = None):
        super().__init__(name=name or f"{self.kind}_sampler")
        self.z_dim = int(z_dim)

    def sample(self, num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    @staticmethod
    def stateless_seed(seed: tf.Tensor, stream: int = 0) -> tf.Tensor:
        """The [2] int64 stateless seed of `seed`; `stream` separates a sampler's draws."""
        return tf.stack([tf.cast(seed, tf.int64), tf.constant(stream, tf.int64)])


class PriorSampler(LatentSampler):
    """z ~ N(0, I) from `seed` (what the export's `sample` signature has always drawn)."""

    kind = "prior"

    def sample(self, num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = tf.stack([tf.cast(num_samples, tf.int32), self.z_dim])
        return tf.random.stateless_normal(shape, seed=self.stateless_seed(seed))
