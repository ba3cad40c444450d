"""WAE-MMD's objective (its record: pga_tf/methods/cards/wae.py)."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from pga_tf.config import Config
from pga_tf.methods import baseline_objectives, objectives
from pga_tf.methods.parts import Losses, Noise, spread


def losses(
    cfg: Config, encoder: Callable, decoder: Callable, images: tf.Tensor, noise: Noise, step: tf.Tensor
) -> Losses:
    """WAE-MMD (Tolstikhin et al., ICLR 2018, Algorithm 2): ||x - D(E(x))||^2 + lambda * MMD.

    Deterministic encoder; the MMD (baseline_objectives.imq_mmd) compares the batch's codes with as many
    prior samples (`noise.prior`). Under tf.distribute it is computed on each replica's share and
    the replicas' estimates are averaged: each is unbiased, with the variance of a smaller batch
    (WAE's own code estimates it per batch). One loss trains both nets. Batch norm: the encoder
    pass and the reconstruction pass update the moving statistics (there is no prior pass).
    """
    del step  # no warm-up
    z = encoder(images, training=True, update_stats=True)
    rec = objectives.squared_error(images, decoder(z, training=True, update_stats=True))
    mmd = spread(baseline_objectives.imq_mmd(z, noise.prior), rec)
    loss = rec + cfg.wae_lambda * mmd
    return Losses(loss, loss, {"img_rec": rec, "mmd": mmd}, surrogate=loss)
