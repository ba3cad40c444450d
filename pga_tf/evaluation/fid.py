"""FID and KID of generated images against a dataset split, with cached real-data statistics.

The distances are TF-GAN's (see tfgan_metrics.py); this module feeds them features, keeps the
real side's statistics on disk, and draws the generated side from a decoder and a latent sampler.

Real statistics are cached as .npz files (features, their mean and unbiased covariance) under a
key of: the extractor's checksum, dataset, split, N, and a sha256 of the N images themselves, so
a different data directory holding a same-named dataset cannot be mistaken for the real one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from pga_tf import data, jsonfile
from pga_tf.evaluation import tfgan_metrics
from pga_tf.evaluation.features import Extractor
from pga_tf.samplers import LatentSampler, sampler_suffix

# KID's block estimator: at most this many samples per block (TF-GAN's default is 1024).
KID_BLOCK = 1000


@dataclasses.dataclass
class FeatureStats:
    """Features of one image set: activations [N, F], their mean [F] and covariance [F, F]."""

    activations: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @property
    def n(self) -> int:
        return int(self.activations.shape[0])


def stats_of(activations: np.ndarray) -> FeatureStats:
    """Mean and unbiased covariance (as TF-GAN computes them) in float64."""
    a = np.asarray(activations, np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"need [N >= 2, F] activations, got shape {a.shape}")
    return FeatureStats(np.asarray(activations, np.float32), a.mean(0), np.cov(a, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)): the Frechet distance between two Gaussians.

    Tr((S1 S2)^(1/2)) is TF-GAN's `trace_sqrt_product` (the one FID from activations uses), in
    float64, so this equals `fid_from_activations` on the activations the moments came from.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    tr_sqrt = float(tfgan_metrics.trace_sqrt_product(tf.constant(s1), tf.constant(s2)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def fid(real: FeatureStats, fake: FeatureStats) -> float:
    return frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)


def few_samples_warning(n_generated: int, n_real: int, feature_dim: int, fid_name: str = "FID") -> str | None:
    """A one-line warning when an FID's covariances are singular, else None.

    N images give a covariance of rank at most N - 1, so with N <= feature_dim on either side
    the FID is dominated by sampling error: even two draws of real images score far from 0, and
    the value moves with N. FIDs are comparable only at the same N (and extractor and real
    split), with N above feature_dim; evaluate.py's default 10000 is above both feature sizes
    used here (128 for the domain classifiers, 2048 for Inception).
    """
    if min(n_generated, n_real) > feature_dim:
        return None
    return (
        f"{fid_name} of {n_generated} generated vs {n_real} real images: not more than the "
        f"{feature_dim} feature dimensions, so the covariances are singular and the FID is "
        f"inflated (even real vs real scores far above 0); compare FIDs only at the same N, "
        f"above {feature_dim} (10000 by default)"
    )


def fid_from_activations(act1: np.ndarray, act2: np.ndarray) -> float:
    """TF-GAN's frechet_classifier_distance_from_activations (float64)."""
    return float(
        tfgan_metrics.frechet_classifier_distance_from_activations(
            tf.constant(act1, tf.float64), tf.constant(act2, tf.float64)
        )
    )


def kid(act1: np.ndarray, act2: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """TF-GAN's kernel (Inception) distance and its standard error, or (nan, nan) if either set
    has fewer than 2 rows.

    Both sets are shuffled first (a fixed permutation): the block estimator assumes random
    order, and a split stored sorted by class would bias it. The block size is chosen so every
    block holds at least 2 rows of each set.
    """
    n1, n2 = len(act1), len(act2)
    if min(n1, n2) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    act1 = np.asarray(act1, np.float64)[rng.permutation(n1)]
    act2 = np.asarray(act2, np.float64)[rng.permutation(n2)]
    blocks = max(1, min(math.ceil(max(n1, n2) / KID_BLOCK), min(n1, n2) // 2))
    block = math.ceil(max(n1, n2) / blocks)
    # TF-GAN's map_fn(back_prop=False) logs a deprecation warning on every call.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        mean, std = tfgan_metrics.kernel_classifier_distance_and_std_from_activations(
            tf.constant(act1), tf.constant(act2), max_block_size=block
        )
    finally:
        tf_logger.setLevel(level)
    return float(mean), float(std)


# ------------------------------------------------------------------------ real-data statistics
def _images_sha256(images: np.ndarray) -> str:
    a = np.ascontiguousarray(images, np.float32)
    digest = hashlib.sha256(repr(a.shape).encode())
    digest.update(a.tobytes())
    return digest.hexdigest()


class StatsCache:
    """Real-data FeatureStats on disk, one .npz (+ a .json describing it) per key."""

    def __init__(self, directory: str | None):
        self.directory = os.path.expanduser(directory) if directory else None

    def key(self, extractor: Extractor, dataset: str, split: str, n: int, images_sha: str) -> str:
        parts = [extractor.checksum, dataset, split, str(n), images_sha]
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
        return f"{dataset}_{split}_{n}_{extractor.name}_{digest}"

    def path(self, key: str) -> str | None:
        return os.path.join(self.directory, key + ".npz") if self.directory else None

    def load(self, key: str, n: int, feature_dim: int) -> tuple[FeatureStats | None, str]:
        """(the entry's statistics, "") if it holds `n` finite feature rows of `feature_dim`
        with their mean and covariance; else (None, why: "" when there is no entry). A damaged
        entry (cut short, another entry copied over it) is computed again, not used."""
        path = self.path(key)
        if path is None or not os.path.isfile(path):
            return None, ""
        try:
            with np.load(path) as f:
                stats = FeatureStats(f["activations"], f["mu"], f["sigma"])
                there = str(f["key"]) if "key" in f.files else key  # entries before the key was kept
        except Exception as e:  # any damage np.load trips on (zip, pickle, header, dtype)
            return None, f"unreadable ({type(e).__name__})"
        if there != key:
            return None, f"is the entry of {there}, copied over it"
        shapes = (stats.activations.shape, stats.mu.shape, stats.sigma.shape)
        if shapes != ((n, feature_dim), (feature_dim,), (feature_dim, feature_dim)):
            return None, f"holds shapes {shapes}, not those of {n} features of {feature_dim}"
        if not all(np.isfinite(a).all() for a in (stats.activations, stats.mu, stats.sigma)):
            return None, "holds non-finite values"
        return stats, ""

    def save(self, key: str, stats: FeatureStats, info: dict) -> None:
        path = self.path(key)
        if path is None:
            return
        os.makedirs(self.directory, exist_ok=True)
        tmp = jsonfile.temporary_name(path, ".tmp.npz")  # two jobs may fill one entry at once
        np.savez(tmp, activations=stats.activations, mu=stats.mu, sigma=stats.sigma, key=np.array(key))
        os.replace(tmp, path)
        jsonfile.write(path[:-4] + ".json", info, indent=2, sort_keys=True, allow_nan=True)


def load_real_images(dataset: str, n: int, split: str = "test", data_dir: str | None = None) -> np.ndarray:
    """The first min(n, split size) images of `split`, [-1, 1] float32."""
    ds = data.load_images(dataset, split, data_dir).take(n).batch(1000)
    batches = list(ds.as_numpy_iterator())
    if not batches:
        raise data.DataError(f"{dataset} {split} split is empty")
    images = np.concatenate(batches)
    if len(images) < 2:
        raise data.DataError(f"{dataset} {split} split has {len(images)} image(s); FID needs at least 2")
    return images


def real_stats(
    extractor: Extractor,
    dataset: str,
    n: int,
    split: str = "test",
    data_dir: str | None = None,
    cache: StatsCache | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> FeatureStats:
    """FeatureStats of the first n (at most all) `split` images, from the cache when possible."""
    images = load_real_images(dataset, n, split, data_dir)
    extractor.check_images(images.shape)
    cache = cache or StatsCache(None)
    key = cache.key(extractor, dataset, split, len(images), _images_sha256(images))
    stats, damage = cache.load(key, len(images), extractor.feature_dim)
    if stats is not None:
        log(f"real statistics of {len(images)} {dataset} {split} images: cached ({cache.path(key)})")
        return stats
    if damage:
        log(f"warning: the cached real statistics {cache.path(key)} {damage}; computing them again")
    t0 = time.time()
    stats = stats_of(extractor.of_array(images, desc=f"real {split} features"))
    cache.save(
        key,
        stats,
        {
            "extractor": extractor.describe(),
            "dataset": dataset,
            "split": split,
            "n": len(images),
            "data_dir": data_dir or "",
            "seconds": time.time() - t0,
        },
    )
    where = f"; cached to {cache.path(key)}" if cache.directory else ""
    log(f"real statistics of {len(images)} {dataset} {split} images: {time.time() - t0:.1f} s{where}")
    return stats


# ----------------------------------------------------------------------------- generated side
def latent_draws(n: int, sampler: LatentSampler, seed: int) -> np.ndarray:
    """n codes [n, z_dim] from `sampler` (stateless: the same seed gives the same codes)."""
    return sampler.sample(tf.constant(n, tf.int32), tf.constant(seed, tf.int64)).numpy()


def generate(decoder: Callable, z: np.ndarray, batch_size: int = 250):
    """Yields batches of D(z) images (inference mode) as numpy arrays."""
    for i in range(0, len(z), batch_size):
        yield decoder(tf.constant(z[i : i + batch_size]), training=False).numpy()


def sample_features(
    decoder: Callable,
    extractor: Extractor,
    n: int,
    sampler: LatentSampler,
    seed: int = 0,
    batch_size: int = 250,
    keep: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of n images D(z), z drawn from `sampler` with `seed`; also the first `keep` images."""
    kept = []

    def batches():
        for images in generate(decoder, latent_draws(n, sampler, seed), batch_size):
            if sum(map(len, kept)) < keep:
                kept.append(images[: keep - sum(map(len, kept))])
            yield images

    activations = extractor.of_batches(batches(), n, desc="sample features")
    first = np.concatenate(kept) if kept else np.zeros((0,), np.float32)
    return activations, first


# ----------------------------------------------------------------------- training-time hook
class FIDCallback:
    """A `loop.fit` callback: every `every` steps, FID of `num_samples` samples against
    the test split, written to TensorBoard as eval/FID-<extractor>[-<sampler>] and logged.

    Real statistics are computed (or read from the cache) when the callback is built. The codes
    are drawn from `sampler` with a fixed seed at each evaluation: for a fixed sampler (the prior)
    successive values differ by the model only; a sampler that trains with the run (the 2-stage
    VAE's second stage) is taken as it is at that step.
    """

    def __init__(
        self,
        extractor: Extractor,
        dataset: str,
        sampler: LatentSampler,
        every: int,
        num_samples: int,
        data_dir: str | None = None,
        cache: StatsCache | None = None,
        seed: int = 0,
        batch_size: int = 250,
        log: Callable[[str], None] = print,
    ):
        if every <= 0:
            raise ValueError(f"every must be positive, got {every}")
        self.extractor, self.sampler, self.every, self.log = extractor, sampler, every, log
        self.tag = f"eval/{extractor.fid_name}{sampler_suffix(sampler.kind)}"
        self.real = real_stats(extractor, dataset, num_samples, "test", data_dir, cache, log)
        self.num_samples, self.seed = num_samples, seed + 1
        self.warning = few_samples_warning(num_samples, self.real.n, extractor.feature_dim, extractor.fid_name)
        if self.warning:
            log(f"warning: {self.warning}")
        self.batch_size = batch_size
        self.next_due: int | None = None
        self.history: list[tuple[int, float]] = []

    def __call__(self, step: int, trainer, writer) -> None:
        # fit calls this after every block of steps; blocks need not end on multiples of
        # `every`, so FID runs at the first block end at or past each multiple.
        if self.next_due is None:  # first call (also after a resume): the next multiple
            self.next_due = -(-step // self.every) * self.every
        if step < self.next_due:
            return
        self.next_due = (step // self.every + 1) * self.every
        t0 = time.time()
        z = latent_draws(self.num_samples, self.sampler, self.seed)
        fake = self.extractor.of_batches(generate(trainer.decoder, z, self.batch_size), len(z), desc="FID samples")
        value = fid(self.real, stats_of(fake))
        self.history.append((step, value))
        with writer.as_default(step=step):
            tf.summary.scalar(self.tag, value)
        writer.flush()
        self.log(f"step {step} | {self.tag[len('eval/') :]} {value:.4g} ({len(z)} samples, {time.time() - t0:.1f} s)")
