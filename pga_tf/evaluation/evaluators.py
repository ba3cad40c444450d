"""Evaluation of a trained run: FID/KID and precision/recall of samples, test reconstruction
error, latent NLL.

`evaluate_run` is what evaluate.py runs; it takes plain arguments (no flags) and returns the
report it writes. Each part is also usable alone: `load_run`, `reconstruction_error`,
fid.real_stats / fid.sample_features, likelihood.evaluate.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from pga_tf import checkpoints, config as config_lib, data, methods, samplers
from pga_tf.evaluation import fid as fid_lib, hparams, likelihood, precision_recall
from pga_tf.nets import models
from pga_tf.methods import objectives
from pga_tf.evaluation.features import Extractor
from pga_tf.images import grid, interpolation_grid, save_png

# 2: FID/KID over several draws (value = mean, std over draws). 3: the latent sampler is named
# ("sampler"; metric names and files carry -<sampler> for all but the prior). 4: improved
# precision and recall beside FID/KID; "real_split" may be "validation" (a run's held-out images).
REPORT_VERSION = 4
# KID is TF-GAN's unbiased block estimate of the squared MMD between the two feature sets, with
# the kernel k(x, y) = (x.y / d + 1)^3 on d-dimensional features. We report it as computed: not
# multiplied by 1000 as many papers print it, so its scale is that of the extractor's features.
KID_UNIT = "MMD^2 with kernel (x.y/d + 1)^3 on the extractor's features; unscaled (not x1000)"


class EvalError(Exception):
    """A user-caused problem with the run to evaluate (no config, no checkpoint); one line."""


def load_run(run_dir: str, step: int | None = None, log: Callable[[str], None] = print
             ) -> tuple[config_lib.Config, models.Encoder, models.Decoder, str, int]:
    """The run's config, its encoder/decoder restored from the latest checkpoint (or the one
    saved at `step`), that checkpoint's path and its step.

    Raises:
      EvalError: no run dir, config or checkpoint; no checkpoint kept at `step`; a checkpoint
        that does not fit the config.
    """
    if not os.path.isdir(run_dir):
        raise EvalError(f"run dir {run_dir} does not exist")
    try:
        cfg = config_lib.load(run_dir)
    except config_lib.ConfigError as e:
        raise EvalError(str(e)) from None
    if cfg is None:
        raise EvalError(f"{run_dir} has no {config_lib.CONFIG_FILE}; is it a training run dir?")
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    try:  # the newest checkpoint that reads back whole, held while a training prunes
        ckpt = checkpoints.newest(ckpt_dir, log) if step is None else checkpoints.at_step(ckpt_dir, step)
    except checkpoints.CheckpointError as e:
        raise EvalError(str(e)) from None
    if ckpt is None and (step is None or not checkpoints.complete(ckpt_dir)):
        raise EvalError(f"{run_dir} has no checkpoint yet (looked in {run_dir}/checkpoints)")
    if step is not None:
        kept = [checkpoints.step_of(p) for p in checkpoints.complete(ckpt_dir)]
        if ckpt is None:
            raise EvalError(f"{run_dir} keeps no checkpoint at step {step} (it keeps steps "
                            f"{', '.join(map(str, kept))}; train.py --ckpt_every and "
                            "--keep_checkpoints decide which are kept)")
    channels = data.image_shape(cfg.dataset)[-1]
    # float32 even for a mixed-precision run: the checkpointed variables are float32 anyway.
    encoder, decoder = models.build_models(cfg.model, cfg.z_dim, channels, use_bn=cfg.use_bn,
                                           variational=cfg.variational, bn_momentum=cfg.bn_momentum)
    # Only the models: the optimizer, generator and input position in the checkpoint are unused.
    status = tf.train.Checkpoint(encoder=encoder, decoder=decoder).restore(checkpoints.readable(ckpt))
    try:
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise EvalError(f"checkpoint {ckpt} does not fit the run's config ({type(e).__name__})") from None
    return cfg, encoder, decoder, ckpt, checkpoints.step_of(ckpt)


def encode_mean(encoder: Callable, images, variational: bool) -> tf.Tensor:
    out = encoder(tf.convert_to_tensor(images, tf.float32), training=False)
    return out[0] if variational else out


def reconstruction_error(encoder: Callable, decoder: Callable, variational: bool,
                         images: tf.data.Dataset, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Per-image MSE of D(E(x)) (the mean code for variational encoders) over an unbatched
    dataset of [-1, 1] images, and the first 32 (input, reconstruction) pairs."""
    from tqdm import tqdm

    errors, pairs = [], []
    with tqdm(desc="reconstructions", unit="img", disable=None, leave=False) as bar:
        for x in images.batch(batch_size):
            rec = decoder(encode_mean(encoder, x, variational), training=False)
            errors.append(objectives.squared_error(x, rec).numpy())
            if sum(map(len, pairs)) < 64:
                pairs.append(np.stack([x.numpy(), rec.numpy()], axis=1)[:32].reshape((-1,) + tuple(x.shape[1:])))
            bar.update(int(x.shape[0]))
    if not errors:
        raise data.DataError("the test split is empty")
    return np.concatenate(errors).astype(np.float64), np.concatenate(pairs)[:64]


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
    pr = {name: {"value": float(np.mean([p[name] for p in prs])), "std": _spread([p[name] for p in prs]),
                 "values": [p[name] for p in prs]} for name in ("precision", "recall")} if prs else \
        {name: {"value": None, "std": None, "values": []} for name in ("precision", "recall")}
    return {"fid": {"value": float(np.mean(fids)), "std": _spread(fids), "values": fids},
            "kid": {"unit": KID_UNIT, "value": _json_number(np.mean(kids)),
                    "std": _json_number(_spread(kids)) if len(kids) > 1 else None,
                    "values": [_json_number(k) for k in kids],
                    "block_std": [_json_number(e) for e in kid_errors]},
            # Kynkaanniemi et al. 2019, k = 3 on the same features (pga_tf/evaluation/precision_recall.py).
            **pr}


def _format(entry: dict) -> str:
    value, std = entry["value"], entry["std"]
    if value is None:
        return "nan"
    return f"{value:.4g}" + (f" +- {std:.2g}" if std is not None else "")


def evaluate_run(run_dir: str, extractor: Extractor, num_samples: int = 10000, nll_examples: int = 1000,
                 fd_draws: int = 16, batch_size: int = 250, seed: int = 0, data_dir: str | None = None,
                 cache: fid_lib.StatsCache | None = None, out: str | None = None,
                 log: Callable[[str], None] = print, draws: int = 3, sampler: str | None = None,
                 sampler_options: samplers.Options = samplers.Options(), step: int | None = None,
                 real_split: str = "test") -> dict:
    """Evaluate the latest checkpoint of `run_dir` (or the one saved at `step`); write the JSON
    report and PNG grids.

    Args:
      run_dir: a training run (config.json + checkpoints/).
      extractor: features for FID/KID (see features.make_extractor).
      num_samples: generated images per draw; the real side is as many images of `real_split`,
        at most all.
      draws: independent draws of `num_samples` latent samples (seeds seed, seed + 1, ...); FID and
        KID are reported as the mean and standard deviation over them.
      nll_examples: test images for the latent NLL (LPGA/LVPGA only); 0 skips it.
      fd_draws: random directions per image for the finite-difference log-det estimate.
      data_dir: data directory (default: the run's).
      cache: real-statistics cache (default: none).
      out: report path (default <run_dir>/eval/report[-<sampler>].json); grids and latent_nll.npz
        beside it, the samples grid as samples[-<sampler>].png, and the TensorBoard HParams
        session (hparams.py) in hparams[-<sampler>]/.
      sampler: what the generated images' z is drawn from (samplers.py; default the method's own,
        config.default_sampler); FID/KID are named FID-<features>[-<sampler>] (no suffix for prior).
      sampler_options: how a fitted sampler (gmm) is fitted, on the run's training images.
      step: evaluate the checkpoint saved at this step instead of the latest (its default
        report goes to <run_dir>/eval/step-<step>/).
      real_split: "test", or "validation": the images the run held out of training (--holdout),
        for scores that choose hyperparameters; the reconstruction error and NLL are measured on
        the same split (default report under eval/[step-<step>/]validation/).
    Returns:
      The report dict, with FID, KID and improved precision/recall (k = 3; mean and spread
      over the draws), reconstruction MSE and, for LPGA/LVPGA, the exact latent NLL.
    Raises:
      EvalError: as load_run, or a validation split asked of a run that held nothing out.
    """
    seconds: dict[str, float] = {}
    t0 = time.time()
    cfg, encoder, decoder, ckpt, ckpt_step = load_run(run_dir, step, log)
    if data_dir is None:
        data_dir = cfg.data_dir or None
    if real_split not in config_lib.REAL_SPLITS:
        raise ValueError(f"real_split must be one of {', '.join(config_lib.REAL_SPLITS)}, got {real_split!r}")
    split = "test" if real_split == "test" else cfg.validation_split
    if split is None:
        raise EvalError(f"{run_dir} held no images out of training (--holdout=0): no validation split")
    # Builds the real side's pipeline, which checks every image file: a bad one is named before
    # the report dir is made.
    data.load_images(cfg.dataset, split, data_dir)
    kind = sampler or config_lib.default_sampler(cfg.method)
    suffix = config_lib.sampler_suffix(kind)
    fid_name, kid_name = extractor.fid_name + suffix, extractor.kid_name + suffix
    out = out or config_lib.eval_report_path(run_dir, kind, step, real_split)
    out_dir = os.path.dirname(os.path.abspath(out))
    log(f"evaluating {ckpt} (step {ckpt_step}): {cfg.method} on {cfg.dataset}, features {extractor.name}, "
        f"sampler {kind}")
    seconds["load"] = time.time() - t0

    # Before anything is written: a sampler that cannot be fitted leaves the run dir as it was.
    t = time.time()
    images = lambda: data.load_images(cfg.dataset, cfg.train_split, data_dir)  # noqa: E731
    latent = samplers.build(kind, samplers.run_source(cfg.z_dim, encoder, cfg.variational, images,
                                                      config=cfg, checkpoint=ckpt), sampler_options, log)
    seconds["sampler"] = time.time() - t
    os.makedirs(out_dir, exist_ok=True)

    t = time.time()
    real = fid_lib.real_stats(extractor, cfg.dataset, num_samples, split, data_dir, cache, log)
    seconds["real_statistics"] = time.time() - t
    warning = fid_lib.few_samples_warning(num_samples, real.n, extractor.feature_dim, extractor.fid_name)
    if warning:
        log(f"warning: {warning}")

    t = time.time()
    seeds = [seed + d for d in range(draws)]
    activations, samples = [], None
    for s in seeds:
        act, kept = fid_lib.sample_features(decoder, extractor, num_samples, latent, s, batch_size,
                                            keep=100 if samples is None else 0)
        activations.append(act)
        samples = kept if samples is None else samples
    dist = distances(real, activations, seed)
    seconds["fid_kid"] = time.time() - t
    log(f"{fid_name} {_format(dist['fid'])}, {kid_name} {_format(dist['kid'])} "
        f"(MMD^2, unscaled), precision {_format(dist['precision'])}, recall {_format(dist['recall'])} "
        f"({draws} draw(s) of {num_samples} samples vs {real.n} {real_split} images, {seconds['fid_kid']:.0f} s)")

    t = time.time()
    errors, pairs = reconstruction_error(encoder, decoder, cfg.variational,
                                         data.load_images(cfg.dataset, split, data_dir), batch_size)
    seconds["reconstruction"] = time.time() - t
    rec = {**_summary(errors), "mse_0_1": float(np.mean(errors)) / 4.0,
           "note": f"per-pixel MSE of D(E(x)) on the {real_split} split, pixels in [-1, 1] (mse_0_1: in [0, 1])"}
    log(f"reconstruction MSE {rec['mean']:.4g} +- {rec['stderr']:.2g} on {rec['n']} {real_split} images")

    nll = None
    if methods.get(cfg.method).likelihood and nll_examples > 0:
        t = time.time()
        images = fid_lib.load_real_images(cfg.dataset, nll_examples, split, data_dir)
        nll = likelihood.evaluate(encoder, decoder, cfg.method, images, fd_draws, seed, batch_size)
        np.savez(os.path.join(out_dir, "latent_nll.npz"),
                 **{k: np.asarray(v) for k, v in nll.pop("per_example").items()})
        seconds["latent_nll"] = time.time() - t
        fd = nll["finite_difference"][f"{cfg.method}_direction"]
        log(f"latent NLL {nll['nll_exact']['mean']:.4g} nats (exact log-det {nll['log_det_exact']['mean']:.4g}; "
            f"training estimator {fd['log_det']['mean']:.4g}, {fd['minus_exact']['mean']:+.3g} vs exact) "
            f"on {nll['examples']} {real_split} images")

    grids = {name: os.path.join(out_dir, f"{name}{suffix if name == 'samples' else ''}.png")
             for name in ("samples", "reconstructions", "interpolations")}
    save_png(grid(samples), grids["samples"])
    save_png(grid(pairs, ncol=16), grids["reconstructions"])
    ends = fid_lib.load_real_images(cfg.dataset, 20, split, data_dir)
    decode = lambda z: decoder(tf.constant(z), training=False).numpy()  # noqa: E731
    save_png(interpolation_grid(ends, encode_mean(encoder, ends, cfg.variational).numpy(), decode),
             grids["interpolations"])
    seconds["total"] = time.time() - t0

    report = {
        "report_version": REPORT_VERSION,
        "run_dir": run_dir,
        "checkpoint": ckpt,
        "step": ckpt_step,
        "config": {k: getattr(cfg, k) for k in config_lib.ARCHITECTURE_KEYS},
        "features": extractor.describe(),
        "sampler": latent.describe(),
        "metrics": {fid_name: dist["fid"]["value"], kid_name: dist["kid"]["value"],
                    "precision" + suffix: dist["precision"]["value"], "recall" + suffix: dist["recall"]["value"],
                    "reconstruction_mse": rec["mean"]},
        "fid": {"name": fid_name, **dist["fid"], "draws": draws, "num_generated": num_samples,
                "num_real": real.n, "real_split": real_split, "seeds": seeds, "warning": warning},
        "kid": {"name": kid_name, **dist["kid"]},
        "precision": {"k": precision_recall.DEFAULT_K, **dist["precision"]},
        "recall": {"k": precision_recall.DEFAULT_K, **dist["recall"]},
        "reconstruction": rec,
        "latent_nll": nll,
        "grids": grids,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "warnings": [warning] if warning else [],
    }
    if nll is not None:
        report["metrics"]["latent_nll_nats"] = nll["nll_exact"]["mean"]
    tb_dir = os.path.join(out_dir, f"hparams{suffix}")
    hparams.write(tb_dir, hparams.of_config(cfg, kind, extractor.name, ckpt_step),
                  {"FID": dist["fid"]["value"], "KID": dist["kid"]["value"], "precision": dist["precision"]["value"],
                   "recall": dist["recall"]["value"], "reconstruction_mse": rec["mean"],
                   "latent_nll_nats": nll["nll_exact"]["mean"] if nll else None}, ckpt_step)
    report["hparams_logdir"] = tb_dir
    _write_json(report, out)
    log(f"report written to {out} ({seconds['total']:.0f} s)")
    return report


def baselines(extractor: Extractor, dataset: str, num_samples: int = 10000, draws: int = 3, seed: int = 0,
              data_dir: str | None = None, cache: fid_lib.StatsCache | None = None,
              out: str | None = None, log: Callable[[str], None] = print) -> dict:
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
        raise data.DataError(f"{dataset} train split has {len(train)} images; {draws} disjoint "
                             f"draws of {n} need {n * draws}")
    shape = train.shape[1:]
    floor = [extractor.of_array(train[d * n:(d + 1) * n], desc=f"train draw {d}") for d in range(draws)]
    noise = [extractor.of_array(np.clip(np.random.default_rng(seed + d).standard_normal((n, *shape)), -1, 1)
                                .astype(np.float32), desc=f"noise draw {d}") for d in range(draws)]
    report = {"report_version": REPORT_VERSION, "dataset": dataset, "features": extractor.describe(),
              "num_real": n, "num_generated": n, "draws": draws, "real_split": "test",
              "floor": {"what": "real train images vs test", **distances(real, floor, seed)},
              "ceiling": {"what": "Gaussian noise images, N(0, 1) clipped to [-1, 1], vs test",
                          **distances(real, noise, seed)},
              "seconds": round(time.time() - t0, 2), "warnings": [warning] if warning else []}
    for name in ("floor", "ceiling"):
        log(f"{name} ({report[name]['what']}): {extractor.fid_name} {_format(report[name]['fid'])}, "
            f"{extractor.kid_name} {_format(report[name]['kid'])} (MMD^2, unscaled)")
    if out:
        _write_json(report, out)
        log(f"baselines written to {out}")
    return report


def _write_json(report: dict, out: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, out)
