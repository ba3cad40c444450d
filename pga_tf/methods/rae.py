"""RAE's objective (its record: pga_tf/methods/cards/rae.py)."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from pga_tf.config import Config
from pga_tf.methods import baseline_objectives, objectives
from pga_tf.methods.parts import Losses, Noise, spread


def losses(
    cfg: Config, encoder: Callable, decoder: Callable, images: tf.Tensor, noise: Noise, step: tf.Tensor
) -> Losses:
    """RAE (Ghosh et al., ICLR 2020, eq. 11): ||x - D(E(x))||^2 + beta ||z||^2 / 2 + lambda L_REG.

    L_REG is `cfg.rae_reg`: "l2", the sum of squares of the decoder's kernels (RAE-L2), or "gp",
    the decoder's gradient penalty at z = E(x) (RAE-GP, baseline_objectives.decoder_gradient_penalty). The
    weight decay is one number per batch, spread over its examples. One loss trains both nets.
    Batch norm as in methods/wae.py.
    """
    del noise, step  # deterministic, no warm-up
    z = encoder(images, training=True, update_stats=True)
    decode = lambda codes: decoder(codes, training=True, update_stats=True)  # noqa: E731
    if cfg.rae_reg == "gp":
        reg, x_rec = baseline_objectives.decoder_gradient_penalty(decode, z)
    else:
        x_rec = decode(z)
        kernels = [v for v in decoder.trainable_variables if v.name == "kernel"]
        reg = spread(baseline_objectives.weight_decay(kernels), z)
    rec = objectives.squared_error(images, x_rec)
    z_l2 = baseline_objectives.latent_l2(z)
    loss = rec + cfg.rae_beta * z_l2 + cfg.rae_lambda * reg
    return Losses(loss, loss, {"img_rec": rec, "z_l2": z_l2, f"dec_{cfg.rae_reg}": reg}, surrogate=loss)
