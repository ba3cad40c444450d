"""Latent samplers: everything that turns a seed into latent codes z, in one interface.

A sampler is a `tf.Module` whose `sample(num_samples, seed)` returns float32 codes
[num_samples, z_dim], drawn statelessly: the same seed gives the same codes in any process,
eagerly, inside a `tf.function` and in a loaded SavedModel. The sample grids, evaluate.py and the
export's `sample` signature all get theirs from `build`, so a sampler is written once and every
consumer agrees on what "samples of this run" means.

  prior      z ~ N(0, I), the generator's prior (every method's default but the 2-stage VAE's)
  gmm        ex-post density estimation: a Gaussian mixture fitted on the aggregate posterior
             (the training codes E(x)), as in RAE (Ghosh et al., ICLR 2020, sec. 4)
  two_stage  u ~ N(0, I) through a second-stage VAE's decoder (2-Stage VAE, Dai & Wipf, ICLR 2019;
             pga_tf/methods/two_stage_vae.py)

The names are config.SAMPLERS (TensorFlow-free, for the flags); a method's own sampler (its
record's `sampler`, e.g. the 2-Stage VAE's two_stage) is built by its method module
(pga_tf/methods/), which depends on this interface, never the other way round.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from pga_tf.config import SAMPLERS, default_sampler, sampler_suffix  # noqa: F401  (re-exported)


class SamplerError(Exception):
    """A sampler that cannot be built for this run (too few codes, a missing net); one line."""


class LatentSampler(tf.Module):
    """Base class: `sample(num_samples: int32 [], seed: int64 []) -> float32 [N, z_dim]`."""

    kind = "base"  # the name reports, TensorBoard tags and filenames carry (FID-<features>-<kind>)

    def __init__(self, z_dim: int, name: str | None = None):
        super().__init__(name=name or f"{self.kind}_sampler")
        self.z_dim = int(z_dim)

    def sample(self, num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        """What the report records about the sampler (JSON-serialisable)."""
        return {"kind": self.kind, "z_dim": self.z_dim}

    @staticmethod
    def stateless_seed(seed: tf.Tensor, stream: int = 0) -> tf.Tensor:
        """The [2] int64 stateless seed of `seed`; `stream` separates a sampler's draws."""
        return tf.stack([tf.cast(seed, tf.int64), tf.constant(stream, tf.int64)])

    @staticmethod
    def tfp_seed(seed: tf.Tensor) -> tf.Tensor:
        """`seed` as the [2] int32 stateless seed TFP's `sample(seed=...)` takes: the int64's two
        32-bit halves, so distinct int64 seeds stay distinct."""
        return tf.bitcast(tf.cast(seed, tf.int64), tf.int32)


class PriorSampler(LatentSampler):
    """z ~ N(0, I) from `seed` (what the export's `sample` signature has always drawn)."""

    kind = "prior"

    def sample(self, num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = tf.stack([tf.cast(num_samples, tf.int32), self.z_dim])
        return tf.random.stateless_normal(shape, seed=self.stateless_seed(seed))

    def describe(self) -> dict:
        return {**super().describe(), "what": "z ~ N(0, I)"}


class GMMSampler(LatentSampler):
    """z from a Gaussian mixture with full covariances: TFP's MixtureSameFamily(Categorical,
    MultivariateNormalTriL), its parameters held in variables, so an export carries them and
    serves without scikit-learn.

    Args:
      weights: [K] mixture weights (positive, summing to 1).
      means: [K, z_dim] component means.
      covariances: [K, z_dim, z_dim] component covariances (symmetric positive definite).
      info: what the fit was (codes, seed, log-likelihood), kept for `describe`.
    """

    kind = "gmm"

    def __init__(
        self, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, info: Mapping[str, Any] | None = None
    ):
        weights, means = np.asarray(weights, np.float64), np.asarray(means, np.float64)
        covariances = np.asarray(covariances, np.float64)
        k, z_dim = means.shape
        if weights.shape != (k,) or covariances.shape != (k, z_dim, z_dim):
            raise ValueError(
                f"GMM parameters disagree: weights {weights.shape}, means {means.shape}, "
                f"covariances {covariances.shape}"
            )
        super().__init__(z_dim)
        # Cholesky factors in float64, then float32: the factor of a float32-rounded covariance
        # can fail for the nearly singular components a collapsed code dimension gives.
        self.logits = tf.Variable(np.log(weights).astype(np.float32), trainable=False, name="logits")
        self.loc = tf.Variable(means.astype(np.float32), trainable=False, name="loc")
        self.scale_tril = tf.Variable(
            np.linalg.cholesky(covariances).astype(np.float32), trainable=False, name="scale_tril"
        )
        self.info = dict(info or {})

    @property
    def components(self) -> int:
        return int(self.loc.shape[0])

    def distribution(self):
        import tensorflow_probability as tfp

        tfd = tfp.distributions
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=self.logits), tfd.MultivariateNormalTriL(loc=self.loc, scale_tril=self.scale_tril)
        )

    def sample(self, num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return self.distribution().sample(tf.cast(num_samples, tf.int32), seed=self.tfp_seed(seed))

    def describe(self) -> dict:
        return {
            **super().describe(),
            "what": "Gaussian mixture, full covariance, fitted on training codes",
            "components": self.components,
            "weights": [round(float(w), 6) for w in tf.nn.softmax(self.logits).numpy()],
            **self.info,
        }

    @classmethod
    def fit(cls, codes: np.ndarray, components: int = 10, seed: int = 0, max_iter: int = 100) -> GMMSampler:
        """Fit `components` full-covariance Gaussians to `codes` [N, z_dim] with scikit-learn's EM.

        RAE's ex-post density estimation (Ghosh et al., ICLR 2020, sec. 4: 10 components, full
        covariance). k-means initialisation with `seed`, so a fit is reproducible. Raises
        SamplerError if there are fewer codes than components.
        """
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        codes = np.asarray(codes, np.float64)
        if codes.ndim != 2 or len(codes) < max(components, 2):
            raise SamplerError(
                f"a {components}-component GMM needs at least {max(components, 2)} training codes; got {len(codes)}"
            )
        if not np.all(np.isfinite(codes)):
            raise SamplerError("the training codes hold NaN or Inf; the encoder is broken")
        t0 = time.time()
        gmm = GaussianMixture(components, covariance_type="full", random_state=seed, max_iter=max_iter)
        # One BLAS thread: on a loaded 2-core machine, BLAS threads spinning against each other
        # made a 60000-code fit 18x slower (104 s against 5.7 s). scikit-learn's own warnings
        # (too few distinct codes for k-means, no convergence) are what `degeneracy` reports.
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gmm.fit(codes)
            labels = gmm.predict(codes)
        info = {
            "codes": int(len(codes)),
            "seed": int(seed),
            "converged": bool(gmm.converged_),
            "iterations": int(gmm.n_iter_),
            "mean_log_likelihood": float(gmm.score(codes)),
            "fit_seconds": round(time.time() - t0, 2),
            "degenerate": degeneracy(codes, labels, gmm.covariances_, gmm.reg_covar),
        }
        return cls(gmm.weights_, gmm.means_, gmm.covariances_, info)


def degeneracy(codes: np.ndarray, labels: np.ndarray, covariances: np.ndarray, reg_covar: float) -> str | None:
    """What makes a fitted mixture degenerate, as one phrase, or None for a sound fit.

    A mixture fitted on fewer distinct codes than components, or with components that own at
    most one code, puts its mass on the training codes themselves: its log-likelihood is high and
    its samples are near-copies. A component whose covariance has collapsed to scikit-learn's
    floor `reg_covar` in some direction is such a point mass too. The fit is kept (a report of an
    early or collapsed run should still say what it samples) and this phrase marks it.
    """
    k = len(covariances)
    found = []
    distinct = len(np.unique(codes, axis=0))
    if distinct < k:
        found.append(f"only {distinct} distinct codes for {k} components")
    counts = np.bincount(labels, minlength=k)
    lonely = int(np.sum(counts <= 1))
    if lonely:
        found.append(f"{lonely} of {k} components hold at most one code")
    floor = 10 * reg_covar  # scikit-learn adds reg_covar to every variance
    singular = int(sum(np.linalg.eigvalsh(c).min() <= floor for c in covariances))
    if singular:
        found.append(
            f"{singular} of {k} components have a near-singular covariance (variance <= {floor:g} in some direction)"
        )
    return "; ".join(found) or None


# ---------------------------------------------------------------------------------- building
@dataclasses.dataclass(frozen=True)
class Options:
    """How `build` fits the samplers that need fitting (evaluate.py / export flags --gmm_*)."""

    gmm_components: int = 10
    gmm_codes: int = 0  # training images whose codes the GMM is fitted on; 0: all of them
    gmm_seed: int = 0


@dataclasses.dataclass
class Source:
    """What a run offers a sampler to be built from.

    z_dim: the latent size. codes: a function of n giving the codes E(x) (the mean code for
    variational encoders) of the first n training images, all of them for n = 0; None where no
    data is at hand. nets: the method's extra modules by name (Method.parts: e.g. the 2-Stage
    VAE's second stage). training: the run is training (a method's sampler may follow its
    phases). origin: where the nets come from, as messages name it ("checkpoint <path>").
    """

    z_dim: int
    codes: Callable[[int], np.ndarray] | None = None
    nets: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    training: bool = False
    origin: str = "this run"


def _build_prior(source: Source, options: Options, log: Callable[[str], None]) -> LatentSampler:
    return PriorSampler(source.z_dim)


def _build_gmm(source: Source, options: Options, log: Callable[[str], None]) -> LatentSampler:
    if source.codes is None:
        raise SamplerError("the gmm sampler needs the run's training images to fit on")
    t0 = time.time()
    codes = source.codes(options.gmm_codes)
    encode_seconds = time.time() - t0
    sampler = GMMSampler.fit(codes, options.gmm_components, options.gmm_seed)
    sampler.info["encode_seconds"] = round(encode_seconds, 2)
    log(
        f"sampler gmm: {sampler.components} full-covariance components fitted on {len(codes)} "
        f"training codes E(x) ({encode_seconds:.0f} s to encode, {sampler.info['fit_seconds']:.0f} s "
        f"of EM, {sampler.info['iterations']} iterations, converged {sampler.info['converged']}; "
        f"mean log-likelihood {sampler.info['mean_log_likelihood']:.4g} nats/code)"
    )
    if sampler.info["degenerate"]:
        log(
            f"warning: the gmm fit is degenerate ({sampler.info['degenerate']}): its samples are "
            "near-copies of training codes; fit on more codes (--gmm_codes) or fewer components "
            "(--gmm_components)"
        )
    return sampler


# kind -> builder(source, options, log). A new sampler for every method adds its builder here; a
# method's own sampler is named by its record (Method.samplers) and lives with the method.
BUILDERS: dict[str, Callable[[Source, Options, Callable[[str], None]], LatentSampler]] = {
    "prior": _build_prior,
    "gmm": _build_gmm,
}


def build(
    kind: str, source: Source, options: Options = Options(), log: Callable[[str], None] = lambda line: None
) -> LatentSampler:
    """The `kind` sampler of a run (see the module docstring); SamplerError if it cannot be built
    from `source`, ValueError for a name that is no sampler."""
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; choose one of {', '.join(SAMPLERS)}")
    if kind in BUILDERS:
        return BUILDERS[kind](source, options, log)
    from pga_tf import methods

    return methods.resolve(methods.method_samplers()[kind])(source, options, log)


def encode_codes(
    encoder: Callable, variational: bool, images: tf.data.Dataset, n: int = 0, batch_size: int = 500
) -> np.ndarray:
    """Codes E(x) [min(n, len), z_dim] of the first n (0: all) images of an unbatched dataset, in
    inference mode; the mean code mu for variational encoders (the aggregate posterior's centres,
    what RAE's ex-post GMM and the 2-Stage VAE's second stage are fitted on)."""
    if n > 0:
        images = images.take(n)
    out = []
    for x in images.batch(batch_size):
        z = encoder(x, training=False)
        out.append((z[0] if variational else z).numpy())
    if not out:
        raise SamplerError("the training split is empty: no codes to fit a sampler on")
    return np.concatenate(out)


def run_source(
    z_dim: int,
    encoder: Callable,
    variational: bool,
    images: Callable[[], tf.data.Dataset],
    nets: Mapping[str, Any] | None = None,
    batch_size: int = 500,
    origin: str = "this run",
) -> Source:
    """The Source of a trained run (runs.Run.sampler builds one): `images()` gives its unbatched
    [-1, 1] training images, encoded only if a sampler asks for codes; `nets` its method's
    restored parts; `origin` what messages call it."""
    return Source(
        z_dim, lambda n: encode_codes(encoder, variational, images(), n, batch_size), dict(nets or {}), origin=origin
    )
