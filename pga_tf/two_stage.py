"""The 2-Stage VAE (Dai & Wipf, ICLR 2019): its variables beyond the image nets, and stage 2.

Stage 1 is a VAE on the image nets (models.py) whose decoder scale gamma_x is learned (the
decoder's `log_gamma`, see models.Decoder and step.two_stage_vae_losses), trained by the run's
optimizer like any other method.
Stage 2 is a small fully connected VAE fitted afterwards on stage 1's codes, as in the official
code (daib13/TwoStageVAE, network/two_stage_vae_model.py `build_encoder2`/`build_decoder2`, and
demo.py):

* each net is `depth` dense ReLU layers of `width` units whose output is concatenated with the
  net's input before the heads; the encoder's heads give mu_u and log sigma_u^2 (the official
  parameterises log sigma_u, the same family), the decoder's gives z_hat; u has z_dim dimensions;
* its decoder scale gamma_z is learned too (the stage-2 decoder's `log_gamma`, initially 0);
* its training data are samples of stage 1's posterior, z = mu(x) + sigma(x) * eps with a fresh
  eps each step, where mu(x), sigma(x) are computed once, in inference mode, over the training
  set when stage 2 begins (the official `extract_posterior`, then `mu_z + sd_z * noise` per
  batch); epochs are reshuffled and the last partial batch dropped, as there;
* its own Adam optimizer (`--stage2_lr`, the official --lr2 1e-4) and step counter.

Sampling is u ~ N(0, I) -> z = z_hat(u) + gamma_z * eps -> stage 1's decoder (the official
`generate(stage=2)`); `samplers.TwoStageSampler` draws the z.

Every variable here lives in the run's checkpoint under `two_stage`, so a run killed in stage 2
resumes there at the right step. The stage-2 batches are a stateless function of (seed, step)
and the noise comes from the checkpointed generator, so nothing else needs saving; the codes are
recomputed on resume from the (by then frozen) stage-1 encoder.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from pga_tf import baselines, checkpoints, samplers


class _MLP(keras.Model):
    """`depth` dense ReLU layers of `width`, their output concatenated with the input, then the
    linear heads (official `build_encoder2`/`build_decoder2`). With `learned_scale`, also a
    float32 scalar `log_gamma` (initially 0), as models.Decoder has."""

    def __init__(self, in_dim: int, depth: int, width: int, heads: dict[str, int], name: str,
                 learned_scale: bool = False):
        super().__init__(name=name)
        self.hidden = [keras.layers.Dense(width, activation="relu", name=f"fc{i}") for i in range(depth)]
        self.heads = {key: keras.layers.Dense(dim, name=key) for key, dim in heads.items()}
        shape = (None, in_dim)
        for layer in self.hidden:
            layer.build(shape)
            shape = (None, width)
        for head in self.heads.values():
            head.build((None, in_dim + width))
        self.log_gamma = (self.add_weight(shape=(), initializer="zeros", name="log_gamma")
                          if learned_scale else None)

    def call(self, x, training: bool = False):
        t = x
        for layer in self.hidden:
            t = layer(t)
        t = tf.concat([x, t], axis=-1)
        return tuple(head(t) for head in self.heads.values())


class TwoStage(tf.Module):
    """The 2-Stage VAE's second stage: its nets, log gamma_z and optimizer. Build inside the
    strategy's scope (as the Trainer does)."""

    def __init__(self, z_dim: int, depth: int, width: int, lr: float):
        super().__init__(name="two_stage")
        self.z_dim = int(z_dim)
        self.encoder = _MLP(z_dim, depth, width, {"mu": z_dim, "log_var": z_dim}, "stage2_encoder")
        # Its log_gamma is the official loggamma_z (initially 0).
        self.decoder = _MLP(z_dim, depth, width, {"z_hat": z_dim}, "stage2_decoder", learned_scale=True)
        self.optimizer = keras.optimizers.Adam(learning_rate=lr)
        self.optimizer.build(self.stage2_variables)

    @property
    def stage2_variables(self) -> list[tf.Variable]:
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    @property
    def step(self) -> tf.Variable:
        """Stage-2 steps taken (the stage-2 optimizer's iteration count, checkpointed)."""
        return self.optimizer.iterations

    def decode_mean(self, u: tf.Tensor) -> tf.Tensor:
        return self.decoder(u)[0]

    def losses(self, z: tf.Tensor, eps: tf.Tensor) -> tuple[tf.Tensor, dict]:
        """Stage 2's per-example loss on codes z [N, z_dim] with reparameterisation noise eps."""
        mu, log_var = self.encoder(z)
        u = mu + tf.exp(0.5 * log_var) * eps
        return baselines.vae_loss(z, self.decode_mean(u), self.decoder.log_gamma, mu, log_var)

    def sampler(self) -> samplers.TwoStageSampler:
        return samplers.TwoStageSampler(self.decoder, self.z_dim)


def build(cfg) -> TwoStage:
    return TwoStage(cfg.z_dim, cfg.stage2_depth, cfg.stage2_width, cfg.stage2_lr)


class NotTrained(ValueError):
    """A checkpoint whose stage 2 has not started: it has no two-stage sampler yet."""


def restore_sampler(cfg, ckpt: str) -> samplers.TwoStageSampler:
    """The TwoStageSampler of a two_stage_vae run's checkpoint (its stage-2 nets, restored).

    Raises NotTrained if the checkpoint is from stage 1, ValueError (and TF's errors) if it does
    not hold this configuration's stage-2 nets.
    """
    parts = build(cfg)
    status = tf.train.Checkpoint(two_stage=parts).restore(checkpoints.readable(ckpt))
    status.expect_partial().assert_existing_objects_matched()
    if int(parts.step.numpy()) == 0:
        raise NotTrained(f"checkpoint {ckpt} is from stage 1 of the 2-Stage VAE: its stage-2 VAE, "
                         "the sampler, has not trained yet (train the run to its end)")
    return parts.sampler()


def posterior_codes(encode: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]],
                    images: tf.data.Dataset, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(mu, log_var) [n, z_dim] of stage 1's encoder, in inference mode, over an unbatched
    dataset of images (the official `extract_posterior`)."""
    mus, log_vars = [], []
    for x in images.batch(batch_size):
        mu, log_var = encode(x)
        mus.append(mu.numpy())
        log_vars.append(log_var.numpy())
    if not mus:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(mus).astype(np.float32), np.concatenate(log_vars).astype(np.float32)


def epoch_indices(step: tf.Tensor, n: int, batch_size: int, seed: int) -> tf.Tensor:
    """The [batch_size] code indices of stage-2 step `step` (0-based): epochs of n // batch_size
    batches, each epoch a fresh permutation drawn statelessly from (seed, epoch), the last
    partial batch dropped (official demo.py)."""
    per_epoch = n // batch_size
    step = tf.cast(step, tf.int64)
    epoch, position = step // per_epoch, step % per_epoch
    keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    order = tf.argsort(keys)
    start = tf.cast(position, tf.int32) * batch_size
    return order[start:start + batch_size]


class SecondStage:
    """Trains a TwoStage's stage-2 VAE on a fixed set of stage-1 posterior codes.

    Held by the Trainer, not checkpointed: its state is the TwoStage variables and generator,
    which are.
    """

    def __init__(self, parts: TwoStage, mu: np.ndarray, log_var: np.ndarray, global_batch: int,
                 seed: int, strategy: tf.distribute.Strategy, generator: tf.random.Generator):
        n = len(mu)
        if n < global_batch:
            raise ValueError(f"stage 2 needs at least --batch_size={global_batch} training codes, "
                             f"got {n}")
        self.parts, self.n, self.seed = parts, n, seed
        self.global_batch = global_batch
        self.strategy, self.generator = strategy, generator
        self.local_batch = global_batch // strategy.num_replicas_in_sync
        # Not tracked by the checkpoint (a plain attribute of a plain object): recomputed on resume.
        with strategy.scope():
            self.mu = tf.Variable(mu, trainable=False, name="stage2_codes_mu")
            self.log_var = tf.Variable(log_var, trainable=False, name="stage2_codes_log_var")
        self._train_n = None

    def replica_step(self) -> dict:
        parts = self.parts
        ctx = tf.distribute.get_replica_context()
        idx = epoch_indices(parts.step, self.n, self.global_batch, self.seed)
        start = ctx.replica_id_in_sync_group * self.local_batch
        idx = idx[start:start + self.local_batch]
        mu, log_var = tf.gather(self.mu, idx), tf.gather(self.log_var, idx)
        shape = [self.local_batch, parts.z_dim]
        z = mu + tf.exp(0.5 * log_var) * self.generator.normal(shape)
        eps = self.generator.normal(shape)
        variables = parts.stage2_variables
        with tf.GradientTape() as tape:
            loss, terms = parts.losses(z, eps)
            mean_loss = tf.nn.compute_average_loss(loss, global_batch_size=self.global_batch)
        grads = tape.gradient(mean_loss, variables)
        parts.optimizer.apply_gradients(zip(grads, variables))
        metrics = {f"stage2_{k}": tf.nn.compute_average_loss(v, global_batch_size=self.global_batch)
                   for k, v in terms.items()}
        metrics["stage2_loss"] = mean_loss
        return metrics

    def _build(self) -> Callable:
        strategy = self.strategy

        def distributed_step():
            out = strategy.run(self.replica_step)
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

        def non_finite(metrics):
            return tf.logical_not(tf.reduce_all(tf.math.is_finite(tf.stack(list(metrics.values())))))

        @tf.function
        def train_n(n):
            sums = distributed_step()
            first_bad = tf.where(non_finite(sums), 0, -1)
            for i in tf.range(1, n):
                out = distributed_step()
                sums = {k: sums[k] + out[k] for k in sums}
                first_bad = tf.where((first_bad < 0) & non_finite(out), i, first_bad)
            return {k: v / tf.cast(n, tf.float32) for k, v in sums.items()}, first_bad

        return train_n

    def train_steps(self, n: int) -> tuple[dict, int]:
        """Run n stage-2 steps; (metrics averaged over them, index of the first non-finite step
        or -1)."""
        if self._train_n is None:
            self._train_n = self._build()
        out, first_bad = self._train_n(tf.constant(n, tf.int32))
        return {k: float(v) for k, v in out.items()}, int(first_bad)

