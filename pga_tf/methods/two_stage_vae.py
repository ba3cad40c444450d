"""The 2-Stage VAE (Dai & Wipf, ICLR 2019): its first stage's loss, its variables beyond the
image nets, its second stage (a later training phase) and its sampler. Its record:
pga_tf/methods/cards/two_stage_vae.py.

Stage 1 is a VAE on the image nets (models.py) whose decoder scale gamma_x is learned (the
decoder's `log_gamma`, see models.Decoder and `losses`), trained by the run's optimizer like any
other method.
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
`generate(stage=2)`); `TwoStageSampler` draws the z.

Every variable here lives in the run's checkpoint under `two_stage`, so a run killed in stage 2
resumes there at the right step. The stage-2 batches are a stateless function of (seed, step)
and the noise comes from the checkpointed generator, so nothing else needs saving; the codes are
recomputed on resume from the (by then frozen) stage-1 encoder.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from pga_tf import samplers
from pga_tf.config import Config
from pga_tf.methods import baseline_objectives, objectives
from pga_tf.methods.parts import Losses, Noise, n_step_loop


# ------------------------------------------------------------------------------- stage 1
def losses(
    cfg: Config, encoder: Callable, decoder: Callable, images: tf.Tensor, noise: Noise, step: tf.Tensor
) -> Losses:
    """Stage 1 of the 2-Stage VAE (Dai & Wipf, ICLR 2019): a VAE whose decoder scale gamma_x is
    learned (daib13/TwoStageVAE network/two_stage_vae_model.py, `loss1`).

    Per example: -log N(x; D(z), gamma_x^2 I) summed over pixels, plus KL(q(z|x) || N(0, I))
    summed over dimensions, z = mu + sigma * eps. Both nets (log gamma_x is the decoder's) take
    the gradient of this one loss. Stage 2 is trained apart (SecondStage).

    Args:
      cfg, step: unused (no coefficient, no warm-up).
      encoder: variational Encoder, images -> (mu, log_var).
      decoder: Decoder with `learned_scale` (its `log_gamma` is log gamma_x).
      images: [N, H, W, C] in [-1, 1].
      noise: this step's draws; `posterior` is eps.
    Returns:
      Losses; terms: img_rec (per-pixel MSE, as every method reports it), nll_x, kl, gamma_x.
    """
    del cfg, step
    mu, log_var = encoder(images, training=True, update_stats=True)
    z = mu + tf.exp(0.5 * log_var) * noise.posterior
    x_hat = decoder(z, training=True, update_stats=True)
    loss, parts = baseline_objectives.vae_loss(images, x_hat, decoder.log_gamma, mu, log_var)
    terms = {
        "img_rec": objectives.squared_error(images, x_hat),
        "nll_x": parts["nll"],
        "kl": parts["kl"],
        "gamma_x": parts["gamma"],
    }
    return Losses(loss, loss, terms)


LossFunction = Callable[[Config, Callable, Callable, tf.Tensor, Noise, tf.Tensor], Losses]


# ------------------------------------------------------------------------------- stage 2
class _MLP(keras.Model):
    """`depth` dense ReLU layers of `width`, their output concatenated with the input, then the
    linear heads (official `build_encoder2`/`build_decoder2`). With `learned_scale`, also a
    float32 scalar `log_gamma` (initially 0), as models.Decoder has."""

    def __init__(
        self, in_dim: int, depth: int, width: int, heads: dict[str, int], name: str, learned_scale: bool = False
    ):
        super().__init__(name=name)
        self.hidden = [keras.layers.Dense(width, activation="relu", name=f"fc{i}") for i in range(depth)]
        self.heads = {key: keras.layers.Dense(dim, name=key) for key, dim in heads.items()}
        shape = (None, in_dim)
        for layer in self.hidden:
            layer.build(shape)
            shape = (None, width)
        for head in self.heads.values():
            head.build((None, in_dim + width))
        self.log_gamma = self.add_weight(shape=(), initializer="zeros", name="log_gamma") if learned_scale else None

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
        return baseline_objectives.vae_loss(z, self.decode_mean(u), self.decoder.log_gamma, mu, log_var)

    @property
    def models(self) -> list[keras.Model]:
        """The nets it trains (for the run's weights digest)."""
        return [self.encoder, self.decoder]

    def sampler(self) -> TwoStageSampler:
        return TwoStageSampler(self.decoder, self.z_dim)


def build(cfg: Config) -> TwoStage:
    return TwoStage(cfg.z_dim, cfg.stage2_depth, cfg.stage2_width, cfg.stage2_lr)


def build_parts(cfg: Config) -> dict:
    """The method's extra checkpointed modules (Method.parts): the second stage, under the
    checkpoint key "two_stage"."""
    return {"two_stage": build(cfg)}


def posterior_codes(
    encode: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]], images: tf.data.Dataset, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
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
    return order[start : start + batch_size]


class SecondStage:
    """Stage 2 as a training phase (Method.later_phases): trains a TwoStage's stage-2 VAE on a
    fixed set of stage-1 posterior codes, encoded when the phase begins.

    Held by the Trainer, not checkpointed: its state is the TwoStage variables and the trainer's
    generator, which are.
    """

    name = "stage 2"

    def __init__(
        self,
        parts: TwoStage,
        global_batch: int,
        seed: int,
        strategy: tf.distribute.Strategy,
        generator: tf.random.Generator,
        steps: int = 0,
        codes: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
        run_step: Callable[[], int] = lambda: 0,
        lr: float | None = None,
    ):
        """`codes()` gives stage 1's posterior codes (mu, log_var) [n, z_dim] when the phase
        begins (or `set_codes` sets them); `run_step()` the run's step, for the log line; `lr`
        the stage-2 learning rate a resumed run takes (the flags given now)."""
        self.parts, self.global_batch, self.seed, self.steps = parts, global_batch, seed, int(steps)
        self.strategy, self.generator = strategy, generator
        self.local_batch = global_batch // strategy.num_replicas_in_sync
        self._codes, self._run_step, self._lr = codes, run_step, lr
        self.mu = self.log_var = None
        self.n = 0
        self._train_n = None

    def done(self) -> int:
        return int(self.parts.step.numpy())

    def resumed(self) -> None:
        if self._lr is not None:  # the flags given now win over the checkpoint's learning rate
            self.parts.optimizer.learning_rate = self._lr

    def set_codes(self, mu: np.ndarray, log_var: np.ndarray) -> None:
        """The codes [n, z_dim] stage 2 trains on (ValueError if fewer than a batch)."""
        n = len(mu)
        if n < self.global_batch:
            raise ValueError(f"stage 2 needs at least --batch_size={self.global_batch} training codes, got {n}")
        self.n = n
        # Not tracked by the checkpoint (plain attributes of a plain object): recomputed on resume.
        with self.strategy.scope():
            self.mu = tf.Variable(mu, trainable=False, name="stage2_codes_mu")
            self.log_var = tf.Variable(log_var, trainable=False, name="stage2_codes_log_var")

    def begin(self, log: Callable[[str], None]) -> None:
        """Encode the training set into stage 1's posterior codes (after stage 1, or on a resume)."""
        if self.mu is not None:
            return
        t0 = time.time()
        self.set_codes(*self._codes())
        log(
            f"stage 2 of 2 from step {self._run_step()}: {self.n} training images encoded into stage "
            f"1's posterior codes ({time.time() - t0:.0f} s)"
        )

    def replica_step(self) -> dict:
        parts = self.parts
        ctx = tf.distribute.get_replica_context()
        idx = epoch_indices(parts.step, self.n, self.global_batch, self.seed)
        start = ctx.replica_id_in_sync_group * self.local_batch
        idx = idx[start : start + self.local_batch]
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
        metrics = {
            f"stage2_{k}": tf.nn.compute_average_loss(v, global_batch_size=self.global_batch) for k, v in terms.items()
        }
        metrics["stage2_loss"] = mean_loss
        return metrics

    def train_steps(self, iterator, n: int) -> tuple[dict, int]:
        """Run n stage-2 steps (the image iterator is not read); (metrics averaged over them,
        index of the first non-finite step or -1)."""
        del iterator
        if self._train_n is None:
            strategy = self.strategy

            def distributed_step():
                out = strategy.run(self.replica_step)
                return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

            self._train_n = n_step_loop(distributed_step)
        out, first_bad = self._train_n(tf.constant(n, tf.int32))
        return {k: float(v) for k, v in out.items()}, int(first_bad)


def later_phases(trainer, main_steps: int) -> list:
    """Method.later_phases: the second stage, for as many steps as the record's later_steps."""
    from pga_tf.methods.cards.two_stage_vae import stage2_steps

    cfg = trainer.cfg

    def codes():
        return posterior_codes(lambda x: trainer.encoder(x, training=False), trainer.train_images())

    return [
        SecondStage(
            trainer.parts["two_stage"],
            trainer.global_batch,
            cfg.seed,
            trainer.strategy,
            trainer.generator,
            stage2_steps(cfg, main_steps),
            codes,
            run_step=lambda: trainer.step,
            lr=cfg.stage2_lr,
        )
    ]


# ------------------------------------------------------------------------------ the sampler
class TwoStageSampler(samplers.LatentSampler):
    """The 2-Stage VAE's latent sampler (Dai & Wipf, ICLR 2019; daib13/TwoStageVAE
    `generate(stage=2)`): u ~ N(0, I) [N, z_dim], then z = z_hat(u) + gamma_z * eps with the
    second stage's decoder z_hat and learned scale gamma_z. Decoding z with the first stage's
    decoder gives the images.

    Args:
      decoder: the stage-2 decoder, u [N, z_dim] -> (z_hat [N, z_dim],), whose `log_gamma`
        variable is log gamma_z (TwoStage.decoder).
      z_dim: latent size (u and z alike).
    """

    kind = "two_stage"

    def __init__(self, decoder: tf.Module, z_dim: int):
        super().__init__(z_dim)
        self.decoder = decoder

    def sample(self, num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = tf.stack([tf.cast(num_samples, tf.int32), self.z_dim])
        u = tf.random.stateless_normal(shape, seed=self.stateless_seed(seed, 0))
        eps = tf.random.stateless_normal(shape, seed=self.stateless_seed(seed, 1))
        z_hat = self.decoder(u, training=False)[0]
        return z_hat + tf.exp(self.decoder.log_gamma) * eps

    def describe(self) -> dict:
        return {
            **super().describe(),
            "what": "u ~ N(0, I) through the 2-Stage VAE's second-stage decoder",
            "gamma_z": float(tf.exp(self.decoder.log_gamma).numpy()),
        }


class StagedSampler(samplers.LatentSampler):
    """A 2-Stage VAE run's sampler while it trains: z ~ N(0, I) (stage 1's own samples) until its
    second stage has taken a step, then `TwoStageSampler` (the sample grids, training-time FID)."""

    kind = "two_stage"

    def __init__(self, two_stage_sampler: TwoStageSampler, stage2_step: tf.Variable):
        super().__init__(two_stage_sampler.z_dim)
        self.prior = samplers.PriorSampler(self.z_dim)
        self.two_stage, self.stage2_step = two_stage_sampler, stage2_step

    def sample(self, num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return tf.cond(
            self.stage2_step > 0,
            lambda: self.two_stage.sample(num_samples, seed),
            lambda: self.prior.sample(num_samples, seed),
        )


def build_sampler(
    source: samplers.Source, options: samplers.Options, log: Callable[[str], None]
) -> samplers.LatentSampler:
    """The "two_stage" sampler (Method.samplers) of the second stage in `source.nets`: while the
    run trains, the prior until stage 2 has stepped; after (a run restored by pga_tf.runs), the
    trained stage 2. SamplerError when the run has no second stage or it has not trained."""
    del options
    parts = source.nets.get("two_stage")
    if parts is None:
        raise samplers.SamplerError(
            "the two_stage sampler is the 2-Stage VAE's second stage: only a --method=two_stage_vae run has one"
        )
    if source.training:
        return StagedSampler(parts.sampler(), parts.step)
    if int(parts.step.numpy()) == 0:
        raise samplers.SamplerError(
            f"{source.origin} is from stage 1 of the 2-Stage VAE: its stage-2 "
            "VAE, the sampler, has not trained yet (train the run to its end)"
        )
    sampler = parts.sampler()
    log(
        f"sampler two_stage: the stage-2 VAE of {source.origin} "
        f"(gamma_z {float(tf.exp(sampler.decoder.log_gamma).numpy()):.4g})"
    )
    return sampler
