"""The parts every method's training step is made of: the step's random draws, the losses it
returns, the warm-up coefficients, cross-replica means and the gradient-path tools of the fused
steps (frozen nets, two views of one pass, forward-mode J_h u).

A method's loss function (pga_tf.methods.Method.losses) takes
(cfg, encoder, decoder, images, noise: Noise, step) and returns Losses; the trainer averages its
per-example losses with tf.nn.compute_average_loss and gives each net the gradient of its loss.

Batch norm (when on) follows the reference's training semantics: every pass of a step is
normalised with that pass's own batch statistics. Only two passes feed the moving averages used
for sampling and export: the encoder's pass on real images and the decoder's pass on prior
samples z ~ N(0, I) (its reconstruction pass for methods that have no prior pass). Those are the
inputs each network sees at inference, so the exported sampler is coherent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import keras
import tensorflow as tf

from pga_tf.config import (
    COEFFICIENTS,  # noqa: F401  (the step's coefficients by name)
    Config,
)


class Noise(NamedTuple):
    """The random draws of one step, per example: [N, z_dim] standard normal each."""

    prior: tf.Tensor  # z ~ N(0, I) for the zn latent reconstruction
    direction: tf.Tensor  # the log-det finite-difference direction
    posterior: tf.Tensor  # eps of the reparameterisation mu + sigma * eps


class Losses(NamedTuple):
    encoder: tf.Tensor  # [N] per-example loss whose gradient the encoder's weights take
    decoder: tf.Tensor  # [N] per-example loss whose gradient the decoder's weights take
    terms: dict  # name -> [N] per-example term, for summaries
    # [N] (fused step only): one loss whose gradient is the encoder loss's for the encoder's
    # weights and the decoder loss's for the decoder's, so one backward pass serves both.
    surrogate: tf.Tensor | None = None


def draw_noise(generator: tf.random.Generator, batch_size: int, z_dim: int) -> Noise:
    shape = [batch_size, z_dim]
    return Noise(*(generator.normal(shape) for _ in range(3)))


def coefficients(cfg: Config, step: tf.Tensor) -> dict:
    """The latent-term coefficients at `step`: 0 for the first `init_steps` steps, then cfg's."""
    on = tf.cast(tf.cast(step, tf.int64) >= cfg.init_steps, tf.float32)
    return {name: on * getattr(cfg, name) for name in COEFFICIENTS}


def gated(coefficient: tf.Tensor, term: Callable[..., tf.Tensor], *inputs: tf.Tensor) -> tuple:
    """A latent term `term(*inputs)` ([N]) and its share `coefficient * term(*inputs)` of a loss.

    While the coefficient is 0 (the warm-up, or 0 in the config) the share is exactly 0, in value
    and in gradient, even where the term is not finite. Multiplying by 0 is not enough: the
    log-det terms are log 0 = -inf wherever h = E(D(z)) is locally constant (its finite
    difference rounds to 0), 0 * -inf is NaN, and so is the backward pass 0 * d log(s)/ds at
    s = 0. So the share is selected by tf.where, not multiplied; and since the term's own
    backward pass still runs (and yields NaN there), its inputs are also selected between
    themselves and their stop_gradient, so tf.where's gradient drops that NaN before it reaches
    the nets. While the coefficient is not 0, value and gradient are those of
    coefficient * term(*inputs), bit for bit.

    Args:
      coefficient: scalar, this step's coefficient (see `coefficients`).
      term: the term as a function of `inputs`.
      inputs: the tensors the term's gradient flows through (net outputs, codes).
    Returns:
      (the term as reported, [N]; the share, [N]). While the coefficient is 0 an example where
      the term is not finite is reported as 0: a term that is off must not stop the run (the
      trainer stops on any non-finite metric). Once on, the term is reported as it is.
    """
    on = tf.not_equal(coefficient, 0)
    inputs = [tf.where(on, x, tf.stop_gradient(x)) for x in inputs]
    value = term(*inputs)
    share = tf.where(on, tf.cast(coefficient, value.dtype) * value, tf.zeros_like(value))
    reported = tf.where(on | tf.math.is_finite(value), value, tf.zeros_like(value))
    return reported, share


def cross_replica_mean(x: tf.Tensor) -> tf.Tensor:
    """Mean of `x` over replicas (identity outside a multi-replica step).

    Batches are split evenly (drop_remainder), so the mean of per-replica means is the global mean.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, x)


def global_latent_rms(mu: tf.Tensor) -> tf.Tensor:
    """VPGA's per-dimension RMS of mu over the *global* batch, held constant."""
    mean_sq = cross_replica_mean(tf.reduce_mean(tf.square(tf.cast(mu, tf.float32)), axis=0))
    return tf.stop_gradient(tf.sqrt(mean_sq))


def h_jvp(encoder, decoder, z: tf.Tensor, u: tf.Tensor, training: bool = True) -> tuple:
    """h(z) = E(D(z)) and J_h(z) u, the latter exactly, in forward mode (--log_det=jvp).

    By the nets' tangent rules (models.Encoder.jvp / Decoder.jvp); inside a GradientTape, J_h u
    has a gradient with respect to the weights (docs/methods.md, "The log-det estimator").
    Moving BN statistics are not updated.

    Args:
      encoder, decoder: models.Encoder / models.Decoder (anything with their `jvp`).
      z: [N, d] primal; u: [N, d] tangent (a unit direction per row).
    Returns:
      (h(z) [N, d] (mu for a variational encoder), D(z) [N, H, W, C], J_h u [N, d] float32).
    """
    x, dx = decoder.jvp(z, u, training=training)
    out, jvp = encoder.jvp(x, dx, training=training)
    return (out[0] if isinstance(out, tuple) else out), x, jvp


def spread(statistic: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """A batch statistic as a per-example [N] loss: tf.nn.compute_average_loss of it (over this
    replica's N of the global batch, summed over replicas) gives the mean of the replicas'
    statistics."""
    return tf.fill(tf.shape(like)[:1], statistic)


LossFunction = Callable[[Config, Callable, Callable, tf.Tensor, Noise, tf.Tensor], Losses]


def frozen(model: Callable) -> Callable:
    """`model`'s training-mode forward with its weights held constant.

    Same values as `model(x, training=True)`; the gradient reaches `x` but none of the model's
    weights. This is the reference's "no encoder gradient" path, z - E(sg(x)) + sg(z), without
    the second encoder pass it costs: the weights enter the pass through stop_gradient.
    """

    def call(x):
        weights = [tf.stop_gradient(v) for v in model.trainable_variables]
        # stateless_call runs the model's body without the model's own name scope.
        with tf.name_scope(f"{model.name}_frozen"):
            out, _ = model.stateless_call(weights, list(model.non_trainable_variables), x, training=True)
        return out

    return call


def frozen_jvp(model) -> Callable:
    """`model.jvp(x, dx, training=True)` with its weights held constant (see `frozen`)."""

    def call(x, dx):
        mapping = [(v, tf.stop_gradient(v)) for v in model.trainable_variables]
        with tf.name_scope(f"{model.name}_frozen"), keras.StatelessScope(state_mapping=mapping):
            return model.jvp(x, dx, training=True)

    return call


def two_views(model: Callable, x: tf.Tensor, tangent: tf.Tensor | None = None) -> tuple:
    """One training-mode pass y = model(x), returned as two tensors of the same value.

    The first's gradient reaches `x` only (as `frozen(model)(x)` would), the second's reaches
    the model's weights only (as `model(stop_gradient(x))` would): the two passes those take,
    for the price of one forward pass. The backward pass is the two vector-Jacobian products
    of the recorded forward pass, each with its own upstream gradient.

    With `tangent` ([N, ...] like x), the pass is `model.jvp(x, tangent)` and J_model(x) tangent
    comes third; like the second view, its gradient reaches the weights only.
    """

    @tf.custom_gradient
    def views(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            if tangent is None:
                y, outs = model(x, training=True), []
            else:
                y, dy = model.jvp(x, tangent, training=True)
                outs = [dy]

        def grad(dy_input_view, dy_weights_view, *d_outs, variables=None):
            # The input's VJP with the first view's gradient, the weights' with the others'.
            dx = tape.gradient(y, x, output_gradients=dy_input_view)
            dw = tape.gradient([y, *outs], variables, output_gradients=[dy_weights_view, *d_outs])
            return dx, dw

        return (y, tf.identity(y), *outs), grad

    return views(x)


def halves(x: tf.Tensor, n: int) -> tuple[tf.Tensor, tf.Tensor]:
    return x[:n], x[n:]


def n_step_loop(distributed_step: Callable[..., dict]) -> Callable:
    """The one compiled loop of n steps every training phase runs.

    `distributed_step(*args)` runs one step and returns its metrics (scalars, summed over
    replicas). The result, train_n(n: int32 [], *args), runs it n times in one tf.function call
    (Python runs once per n steps; the first step fixes the metric structure) and returns
    (each metric's mean over the n steps, the index of the first step with a non-finite metric,
    or -1).
    """

    def non_finite(metrics):
        return tf.logical_not(tf.reduce_all(tf.math.is_finite(tf.stack(list(metrics.values())))))

    @tf.function
    def train_n(n, *args):
        sums = distributed_step(*args)
        first_bad = tf.where(non_finite(sums), 0, -1)
        for i in tf.range(1, n):
            out = distributed_step(*args)
            sums = {k: sums[k] + out[k] for k in sums}
            first_bad = tf.where((first_bad < 0) & non_finite(out), i, first_bad)
        return {k: v / tf.cast(n, tf.float32) for k, v in sums.items()}, first_bad

    return train_n
