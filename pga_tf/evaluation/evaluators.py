"""Evaluation of a trained run: FID/KID and precision/recall of samples, reconstruction error,
latent NLL, grids and the TensorBoard HParams session, each measured by one small evaluator.

`evaluate_run` is what evaluate.py runs. It restores the run (pga_tf.runs), builds its latent
sampler, then runs the evaluators `evaluators_for` picks from its `Options`: each is a callable
(Target, report so far) -> Section, its part of the report and the console line summing it up.
`evaluate_run` times each one, merges the sections into the report and writes it. Each evaluator
is usable alone, as are `reconstruction_error`, `distances`, fid.real_stats / fid.sample_features
and likelihood.evaluate.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import numpy as np
import tensorflow as tf

from pga_tf import config as config_lib
from pga_tf import data, jsonfile, methods, runs, samplers
from pga_tf.evaluation import fid as fid_lib
from pga_tf.evaluation import hparams, likelihood, precision_recall
from pga_tf.evaluation.features import Extractor
from pga_tf.images import grid, interpolation_grid, save_png
from pga_tf.methods import objectives

# 2: FID/KID over several draws (value = mean, std over draws). 3: the latent sampler is named
# ("sampler"; metric names and files carry -<sampler> for all but the prior). 4: improved
# precision and recall beside FID/KID; "real_split" may be "validation" (a run's held-out images).
REPORT_VERSION = 4
# KID is TF-GAN's unbiased block estimate of the squared MMD between the two feature sets, with
# the kernel k(x, y) = (x.y / d + 1)^3 on d-dimensional features. We report it as computed: not
# multiplied by 1000 as many papers print it, so its scale is that of the extractor's features.
KID_UNIT = "MMD^2 with kernel (x.y/d + 1)^3 on the extractor's features; unscaled (not x1000)"


class EvalError(Exception):
    """A user-caused problem with what was asked of a run (a validation split of a run that held
    nothing out); one line. A run that cannot be restored is runs.RunError."""


@dataclasses.dataclass(frozen=True)
class Options:
    """What `evaluate_run` measures and where it writes (evaluate.py's flags).

    Attributes:
      num_samples: generated images per draw; the real side is as many images of `real_split`,
        at most all.
      draws: independent draws of `num_samples` latent samples (seeds seed, seed + 1, ...); FID,
        KID, precision and recall are the mean and standard deviation over them.
      sampler: what the generated images' z is drawn from (samplers.py; None: the method's own,
        config.default_sampler); FID/KID are named FID-<features>[-<sampler>] (no suffix for prior).
      sampler_options: how a fitted sampler (gmm) is fitted, on the run's training images.
      nll_examples: images for the latent NLL (methods with a latent likelihood only); 0 skips it.
      fd_draws: random directions per image for the finite-difference log-det estimate.
      batch_size: images per batch through the nets and the feature extractor.
      seed: of the first draw, the log-det directions and KID's blocks.
      step: evaluate the checkpoint saved at this step instead of the latest (its default report
        goes to <run_dir>/eval/step-<step>/).
      real_split: "test", or "validation": the images the run held out of training (--holdout),
        for scores that choose hyperparameters; the reconstruction error and NLL are measured on
        the same split (default report under eval/[step-<step>/]validation/).
      data_dir: data directory (None: the run's).
      out: report path (None: config.eval_report_path); grids, latent_nll.npz and the HParams
        session (hparams[-<sampler>]/) go beside it.
    """

    num_samples: int = 10000
    draws: int = 3
    sampler: str | None = None
    sampler_options: samplers.Options = samplers.Options()
    nll_examples: int = 1000
    fd_draws: int = 16
    batch_size: int = 250
    seed: int = 0
    step: int | None = None
    real_split: str = "test"
    data_dir: str | None = None
    out: str | None = None


@dataclasses.dataclass(frozen=True)
class Target:
    """What the evaluators measure and where they write.

    Attributes:
      run: the restored run.
      real_split: "test" or "validation", as reports and lines name the real images.
      split: the data split those images are (data.load_images's name, e.g. "train[-500:]").
      data_dir: where the images are read from (None: the dataset's default place).
      out_dir: where files beside the report go (made before any evaluator runs).
      suffix: config.sampler_suffix of the sampler; the samples' files carry it.
    """

    run: runs.Run
    real_split: str
    split: str
    data_dir: str | None
    out_dir: str
    suffix: str

    def real_images(self) -> tf.data.Dataset:
        """The real images, unbatched, [H, W, C] in [-1, 1]."""
        return data.load_images(self.run.cfg.dataset, self.split, self.data_dir)

    def first_real(self, n: int) -> np.ndarray:
        """The first n real images [min(n, all), H, W, C] in [-1, 1]."""
        return fid_lib.load_real_images(self.run.cfg.dataset, n, self.split, self.data_dir)

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)


@dataclasses.dataclass(frozen=True)
class Section:
    """An evaluator's part of the report and the console line that sums it up (None: no line).

    `report` holds top-level report keys; "metrics" and "grids" are merged into the report's own
    dicts, "warnings" appended to its list.
    """

    report: Mapping[str, Any]
    line: str | None = None


class Evaluator(Protocol):
    """Measures one thing of a run. `name` is its key in the report's "seconds"."""

    name: ClassVar[str]

    def __call__(self, target: Target, report: Mapping[str, Any]) -> Section: ...


def reconstruction_error(
    run: runs.Run, images: tf.data.Dataset, batch_size: int = 250
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image MSE [n] of D(E(x)) (the mean code for variational encoders) over an unbatched
    dataset of n [-1, 1] images, and the first 32 (input, reconstruction) pairs [64, H, W, C].

    Raises data.DataError for an empty dataset."""
    from tqdm import tqdm

    errors, pairs = [], []
    with tqdm(desc="reconstructions", unit="img", disable=None, leave=False) as bar:
        for x in images.batch(batch_size):
            rec = run.decoder(run.encode_mean(x), training=False)
            errors.append(objectives.squared_error(x, rec).numpy())
            if sum(map(len, pairs)) < 64:
                pairs.append(np.stack([x.numpy(), rec.numpy()], axis=1)[:32].reshape((-1,) + tuple(x.shape[1:])))
            bar.update(int(x.shape[0]))
    if not errors:
        raise data.DataError("the test split is empty")
    return np.concatenate(errors).astype(np.float64), np.concatenate(pairs)[:64]


# ------------------------------------------------------------------------------ evaluators
@dataclasses.dataclass(frozen=True)
class SampleQuality:
    """FID, KID and improved precision/recall (k = 3) of `draws` draws of `num_samples` images
    decoded from `sampler`'s codes, against as many real images (at most all); the first draw's
    first 100 images are the samples grid, samples[-<sampler>].png."""

    name: ClassVar[str] = "sample_quality"
    extractor: Extractor
    sampler: samplers.LatentSampler
    num_samples: int = 10000
    draws: int = 3
    seed: int = 0
    batch_size: int = 250
    cache: fid_lib.StatsCache | None = None
    log: Callable[[str], None] = print

    def __call__(self, target: Target, report: Mapping[str, Any]) -> Section:
        run, ex = target.run, self.extractor
        real = fid_lib.real_stats(
            ex, run.cfg.dataset, self.num_samples, target.split, target.data_dir, self.cache, self.log
        )
        warning = fid_lib.few_samples_warning(self.num_samples, real.n, ex.feature_dim, ex.fid_name)
        if warning:
            self.log(f"warning: {warning}")
        seeds = [self.seed + d for d in range(self.draws)]
        activations, samples = [], None
        for s in seeds:
            act, kept = fid_lib.sample_features(
                run.decoder, ex, self.num_samples, self.sampler, s, self.batch_size, keep=100 if samples is None else 0
            )
            activations.append(act)
            samples = kept if samples is None else samples
        dist = distances(real, activations, self.seed)
        grid_path = target.path(f"samples{target.suffix}.png")
        save_png(grid(samples), grid_path)
        fid_name, kid_name = ex.fid_name + target.suffix, ex.kid_name + target.suffix
        line = (
            f"{fid_name} {_format(dist['fid'])}, {kid_name} {_format(dist['kid'])} (MMD^2, unscaled), "
            f"precision {_format(dist['precision'])}, recall {_format(dist['recall'])}: "
            f"{self.draws} draw(s) of {self.num_samples} samples vs {real.n} {target.real_split} images"
        )
        return Section(
            {
                "features": ex.describe(),
                "sampler": self.sampler.describe(),
                "metrics": {
                    fid_name: dist["fid"]["value"],
                    kid_name: dist["kid"]["value"],
                    "precision" + target.suffix: dist["precision"]["value"],
                    "recall" + target.suffix: dist["recall"]["value"],
                },
                "fid": {
                    "name": fid_name,
                    **dist["fid"],
                    "draws": self.draws,
                    "num_generated": self.num_samples,
                    "num_real": real.n,
                    "real_split": target.real_split,
                    "seeds": seeds,
                    "warning": warning,
                },
                "kid": {"name": kid_name, **dist["kid"]},
                "precision": {"k": precision_recall.DEFAULT_K, **dist["precision"]},
                "recall": {"k": precision_recall.DEFAULT_K, **dist["recall"]},
                "grids": {"samples": grid_path},
                "warnings": [warning] if warning else [],
            },
            line,
        )


@dataclasses.dataclass(frozen=True)
class Reconstructions:
    """Per-pixel MSE of D(E(x)) over the real images; 32 (input, reconstruction) pairs are the
    reconstructions grid."""

    name: ClassVar[str] = "reconstruction"
    batch_size: int = 250

    def __call__(self, target: Target, report: Mapping[str, Any]) -> Section:
        run = target.run
        errors, pairs = reconstruction_error(run, target.real_images(), self.batch_size)
        rec = {
            **_summary(errors),
            "mse_0_1": float(np.mean(errors)) / 4.0,
            "note": f"per-pixel MSE of D(E(x)) on the {target.real_split} split, pixels in [-1, 1] "
            "(mse_0_1: in [0, 1])",
        }
        grid_path = target.path("reconstructions.png")
        save_png(grid(pairs, ncol=16), grid_path)
        return Section(
            {
                "reconstruction": rec,
                "metrics": {"reconstruction_mse": rec["mean"]},
                "grids": {"reconstructions": grid_path},
            },
            f"reconstruction MSE {rec['mean']:.4g} +- {rec['stderr']:.2g} on {rec['n']} {target.real_split} images",
        )


@dataclasses.dataclass(frozen=True)
class LatentLikelihood:
    """The exact latent NLL of the first `examples` real images, beside the training step's
    finite-difference log-det estimate (likelihood.evaluate); per-image values in latent_nll.npz."""

    name: ClassVar[str] = "latent_nll"
    examples: int = 1000
    fd_draws: int = 16
    seed: int = 0
    batch_size: int = 250

    def __call__(self, target: Target, report: Mapping[str, Any]) -> Section:
        run = target.run
        nll = likelihood.evaluate(
            run.encoder,
            run.decoder,
            run.cfg.method,
            target.first_real(self.examples),
            self.fd_draws,
            self.seed,
            self.batch_size,
        )
        np.savez(target.path("latent_nll.npz"), **{k: np.asarray(v) for k, v in nll.pop("per_example").items()})
        fd = nll["finite_difference"][f"{run.cfg.method}_direction"]
        return Section(
            {"latent_nll": nll, "metrics": {"latent_nll_nats": nll["nll_exact"]["mean"]}},
            f"latent NLL {nll['nll_exact']['mean']:.4g} nats (exact log-det "
            f"{nll['log_det_exact']['mean']:.4g}; training estimator "
            f"{fd['log_det']['mean']:.4g}, {fd['minus_exact']['mean']:+.3g} vs exact) on "
            f"{nll['examples']} {target.real_split} images",
        )


@dataclasses.dataclass(frozen=True)
class Interpolations:
    """Decoded straight lines between the codes of pairs of the first `examples` real images:
    the interpolations grid."""

    name: ClassVar[str] = "interpolations"
    examples: int = 20

    def __call__(self, target: Target, report: Mapping[str, Any]) -> Section:
        run = target.run
        ends = target.first_real(self.examples)
        decode = lambda z: run.decoder(tf.constant(z), training=False).numpy()  # noqa: E731
        grid_path = target.path("interpolations.png")
        save_png(interpolation_grid(ends, run.encode_mean(ends).numpy(), decode), grid_path)
        return Section({"grids": {"interpolations": grid_path}})


@dataclasses.dataclass(frozen=True)
class HParamsSession:
    """The TensorBoard HParams session of this (run, sampler): the run's hyperparameters and the
    report's metrics so far (hparams.py), in hparams[-<sampler>]/. Runs after the metrics'
    evaluators; a metric none of them measured is left out."""

    name: ClassVar[str] = "hparams"
    sampler: str
    features: str

    def __call__(self, target: Target, report: Mapping[str, Any]) -> Section:
        def value(key: str, field: str = "value"):
            return (report.get(key) or {}).get(field)

        tb_dir = target.path(f"hparams{target.suffix}")
        run = target.run
        hparams.write(
            tb_dir,
            hparams.of_config(run.cfg, self.sampler, self.features, run.step),
            {
                "FID": value("fid"),
                "KID": value("kid"),
                "precision": value("precision"),
                "recall": value("recall"),
                "reconstruction_mse": value("reconstruction", "mean"),
                "latent_nll_nats": (value("latent_nll", "nll_exact") or {}).get("mean"),
            },
            run.step,
        )
        return Section({"hparams_logdir": tb_dir})


def evaluators_for(
    run: runs.Run,
    options: Options,
    extractor: Extractor,
    sampler: samplers.LatentSampler,
    cache: fid_lib.StatsCache | None = None,
    log: Callable[[str], None] = print,
) -> list[Evaluator]:
    """The evaluators `options` ask of `run`, in report order (the HParams session last: it
    records the others' metrics)."""
    chosen: list[Evaluator] = [
        SampleQuality(
            extractor, sampler, options.num_samples, options.draws, options.seed, options.batch_size, cache, log
        ),
        Reconstructions(options.batch_size),
    ]
    if methods.get(run.cfg.method).likelihood and options.nll_examples > 0:
        chosen.append(LatentLikelihood(options.nll_examples, options.fd_draws, options.seed, options.batch_size))
    chosen += [Interpolations(), HParamsSession(sampler.kind, extractor.name)]
    return chosen


def _skeleton(run: runs.Run) -> dict:
    """The report before any evaluator ran: every key of the format, in order; a section no
    evaluator fills stays None (e.g. latent_nll of a method without a latent likelihood)."""
    return {
        "report_version": REPORT_VERSION,
        "run_dir": run.run_dir,
        "checkpoint": run.checkpoint,
        "step": run.step,
        "config": {k: getattr(run.cfg, k) for k in config_lib.ARCHITECTURE_KEYS},
        "features": None,
        "sampler": None,
        "metrics": {},
        "fid": None,
        "kid": None,
        "precision": None,
        "recall": None,
        "reconstruction": None,
        "latent_nll": None,
        "grids": {},
        "seconds": {},
        "warnings": [],
        "hparams_logdir": None,
    }


def _merge(report: dict, section: Mapping[str, Any]) -> None:
    for key, value in section.items():
        if key in ("metrics", "grids"):
            report[key].update(value)
        elif key == "warnings":
            report[key].extend(value)
        else:
            report[key] = value


def _timed(seconds: dict[str, float], name: str, fn: Callable, *args) -> Any:
    """fn(*args), its wall time recorded as seconds[name]: the one place evaluation is timed."""
    t = time.time()
    try:
        return fn(*args)
    finally:
        seconds[name] = time.time() - t


def _restore(run_dir: str, options: Options, log: Callable[[str], None]) -> tuple[runs.Run, str, str | None]:
    """The run, the data split of `options.real_split` and the data dir, checked before anything
    is written: a bad real image is named here, not after the report dir is made."""
    run = runs.load(run_dir, options.step, log)
    try:
        split, data_dir = config_lib.real_data(run.cfg, options.real_split, options.data_dir)
    except ValueError as e:
        raise EvalError(str(e)) from None
    data.load_images(run.cfg.dataset, split, data_dir)  # checks every image file
    return run, split, data_dir


def evaluate_run(
    run_dir: str,
    extractor: Extractor,
    options: Options = Options(),
    cache: fid_lib.StatsCache | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Evaluate the latest checkpoint of `run_dir` (or the one saved at `options.step`); write the
    JSON report and the files beside it.

    Args:
      run_dir: a training run (config.json + checkpoints/).
      extractor: features for FID/KID (see features.make_extractor).
      options: what to measure and where to write (see Options).
      cache: real-statistics cache (default: none).
      log: where the progress lines go.
    Returns:
      The report dict (report_version REPORT_VERSION): FID, KID and improved precision/recall
      (mean and spread over the draws), reconstruction MSE and, for methods with a latent
      likelihood, the exact latent NLL; "seconds" holds each stage's wall time.
    Raises:
      runs.RunError: the run cannot be restored (runs.load).
      EvalError: a validation split asked of a run that held nothing out.
      samplers.SamplerError, data.DataError: the sampler cannot be built, an image is unreadable.
    """
    seconds: dict[str, float] = {}
    t0 = time.time()
    run, split, data_dir = _timed(seconds, "load", _restore, run_dir, options, log)
    cfg = run.cfg
    kind = options.sampler or config_lib.default_sampler(cfg.method)
    suffix = config_lib.sampler_suffix(kind)
    out = options.out or config_lib.eval_report_path(run_dir, kind, options.step, options.real_split)
    log(
        f"evaluating {run.checkpoint} (step {run.step}): {cfg.method} on {cfg.dataset}, features "
        f"{extractor.name}, sampler {kind}"
    )
    # Before anything is written: a sampler that cannot be fitted leaves the run dir as it was.
    latent = _timed(seconds, "sampler", run.sampler, kind, options.sampler_options, data_dir, log)
    target = Target(run, options.real_split, split, data_dir, os.path.dirname(os.path.abspath(out)), suffix)
    os.makedirs(target.out_dir, exist_ok=True)

    report = _skeleton(run)
    for evaluator in evaluators_for(run, options, extractor, latent, cache, log):
        section = _timed(seconds, evaluator.name, evaluator, target, report)
        _merge(report, section.report)
        if section.line:
            log(f"{section.line} ({seconds[evaluator.name]:.0f} s)")
    seconds["total"] = time.time() - t0
    report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    _write_json(report, out)
    log(f"report written to {out} ({seconds['total']:.0f} s)")
    return report


def _json_number(x: float) -> float | None:
    """NaN/inf (e.g. KID of too few images) as null, so the report is strict JSON."""
    return float(x) if np.isfinite(x) else None


def _summary(x: np.ndarray) -> dict:
    return {"mean": float(np.mean(x)), "stderr": float(np.std(x) / np.sqrt(len(x))), "n": int(len(x))}


def _spread(values: list[float]) -> float | None:
    """Sample standard deviation over draws (None for a single draw)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def distances(real: fid_lib.FeatureStats, draws_of_activations: list[np.ndarray], seed: int = 0) -> dict:
    """FID and KID of each draw of activations against `real`: per-draw values, mean and spread.

    The spread over independent draws is what says how much a table entry would move if the
    samples were drawn again; KID's own standard error (over blocks of one draw) is kept beside it.
    """
    fids, kids, kid_errors, prs = [], [], [], []
    radii = precision_recall.knn_radii(real.activations) if real.n > precision_recall.DEFAULT_K else None
    for act in draws_of_activations:
        fids.append(fid_lib.fid(real, fid_lib.stats_of(act)))
        k, k_err = fid_lib.kid(real.activations, act, seed)
        kids.append(k)
        kid_errors.append(k_err)
        if radii is not None and len(act) > precision_recall.DEFAULT_K:
            prs.append(precision_recall.precision_recall(real.activations, act, real_radii=radii))
    pr = (
        {
            name: {
                "value": float(np.mean([p[name] for p in prs])),
                "std": _spread([p[name] for p in prs]),
                "values": [p[name] for p in prs],
            }
            for name in ("precision", "recall")
        }
        if prs
        else {name: {"value": None, "std": None, "values": []} for name in ("precision", "recall")}
    )
    return {
        "fid": {"value": float(np.mean(fids)), "std": _spread(fids), "values": fids},
        "kid": {
            "unit": KID_UNIT,
            "value": _json_number(np.mean(kids)),
            "std": _json_number(_spread(kids)) if len(kids) > 1 else None,
            "values": [_json_number(k) for k in kids],
            "block_std": [_json_number(e) for e in kid_errors],
        },
        # Kynkaanniemi et al. 2019, k = 3 on the same features (pga_tf/evaluation/precision_recall.py).
        **pr,
    }


def _format(entry: dict) -> str:
    value, std = entry["value"], entry["std"]
    if value is None:
        return "nan"
    return f"{value:.4g}" + (f" +- {std:.2g}" if std is not None else "")


def baselines(
    extractor: Extractor,
    dataset: str,
    num_samples: int = 10000,
    draws: int = 3,
    seed: int = 0,
    data_dir: str | None = None,
    cache: fid_lib.StatsCache | None = None,
    out: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """FID/KID against the test split, computed as for a model, of two reference "generators".

    floor: real training images (draw d is train images [d n, (d + 1) n), disjoint draws), the
    best a model can score with these features and n. ceiling: Gaussian noise images
    (N(0, 1) per pixel, clipped to [-1, 1]; seed + d), a generator that learned nothing.
    """
    t0 = time.time()
    real = fid_lib.real_stats(extractor, dataset, num_samples, "test", data_dir, cache, log)
    n = real.n
    warning = fid_lib.few_samples_warning(n, n, extractor.feature_dim, extractor.fid_name)
    if warning:
        log(f"warning: {warning}")
    train = fid_lib.load_real_images(dataset, n * draws, "train", data_dir)
    if len(train) < n * draws:
        raise data.DataError(
            f"{dataset} train split has {len(train)} images; {draws} disjoint draws of {n} need {n * draws}"
        )
    shape = train.shape[1:]
    floor = [extractor.of_array(train[d * n : (d + 1) * n], desc=f"train draw {d}") for d in range(draws)]
    noise = [
        extractor.of_array(
            np.clip(np.random.default_rng(seed + d).standard_normal((n, *shape)), -1, 1).astype(np.float32),
            desc=f"noise draw {d}",
        )
        for d in range(draws)
    ]
    report = {
        "report_version": REPORT_VERSION,
        "dataset": dataset,
        "features": extractor.describe(),
        "num_real": n,
        "num_generated": n,
        "draws": draws,
        "real_split": "test",
        "floor": {"what": "real train images vs test", **distances(real, floor, seed)},
        "ceiling": {
            "what": "Gaussian noise images, N(0, 1) clipped to [-1, 1], vs test",
            **distances(real, noise, seed),
        },
        "seconds": round(time.time() - t0, 2),
        "warnings": [warning] if warning else [],
    }
    for name in ("floor", "ceiling"):
        log(
            f"{name} ({report[name]['what']}): {extractor.fid_name} {_format(report[name]['fid'])}, "
            f"{extractor.kid_name} {_format(report[name]['kid'])} (MMD^2, unscaled)"
        )
    if out:
        _write_json(report, out)
        log(f"baselines written to {out}")
    return report


def _write_json(report: dict, out: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    jsonfile.write(out, report, indent=2)
