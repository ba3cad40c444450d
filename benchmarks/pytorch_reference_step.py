#!/usr/bin/env python3
"""An eager PyTorch port of one PGA training step (LPGA, VPGA) with the conv_mnist nets.

This is the baseline the speed issue compares against ("an eager PyTorch port of the reference
step"), measured on the machine at hand so that TensorFlow and PyTorch figures come from one CPU.
It needs only torch and numpy, and must run from a separate venv (see benchmarks/README.md):

    /work/torchvenv/bin/python benchmarks/pytorch_reference_step.py --methods=lpga,vpga \
        --blocks=7 --steps=20 --warmup=10 --json=torch.json
    /work/torchvenv/bin/python benchmarks/pytorch_reference_step.py --check=lpga_step.npz

What one step computes is pga_tf's *plain* step (pga_tf/step.py `method_losses`, not the fused
one) with the coefficients in effect after `init_steps` (every latent term on), batch norm off:

* nets (pga_tf/nets/models.py `_conv_mnist`, dim 64, one channel, 28x28):
  encoder conv5x5/2(64) lrelu(0.2) -> conv5x5/2(128) lrelu -> fc 1024 lrelu -> fc z_dim (mu)
  [and fc z_dim (log_var) for VPGA]; decoder fc 1024 relu -> fc 7*7*128 relu -> reshape ->
  deconv5x5/2(64) relu -> deconv5x5/2(1) -> tanh. Every layer has a bias (no BN). Padding is
  TensorFlow's 'SAME' (for these stride-2 5x5 layers on even sizes: 1 before, 2 after, which
  torch's symmetric `padding=` cannot express, hence the explicit pad / crop below). Flattening
  is channel-major here (NCHW) and channel-minor in Keras (NHWC); `--check` permutes the weights
  of the two fc layers next to the reshape accordingly.
* losses (pga_tf/objectives.py), per example, then the batch mean; the encoder takes the gradient
  of the encoder loss, the decoder that of the decoder loss (two backward passes, as the plain
  step), then SGD with momentum 0.9 on both.
* passes, as the plain step: LPGA E(x), D(mu), h(z_prior), h(sg mu), h(sg mu + delta) where
  h = E o D; VPGA E(x), D(mu), h(z_prior), h(sg mu) (zh_rec, coefficient 0 but computed and
  differentiated, as the plain step does) and the two "no encoder gradient" paths of the
  reference, z_rec - E(sg(x)) + sg(z_rec). `--vpga_frozen=weights` (default; what the issue's
  figure used) computes each of those as one encoder pass with the encoder's weights detached
  (same values and gradients); `--vpga_frozen=two_pass` runs the reference's two passes as the
  plain TF step does. `--check` runs both for VPGA.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pga_tf import machine

DIM = 64  # conv_mnist's width
CHANNELS = 1
HW = 28
# Each method's coefficients after warm-up and its lr (pga_tf/config.py METHOD_DEFAULTS and the
# Config defaults, which flags/{lpga,vpga}_fashion_mnist.cfg do not override).
METHODS = {
    "lpga": dict(z_dim=12, lr=0.1, zn_rec=6e-2, zh_rec=0.0, nll=1.5e-2, vrec=0.0, vkld=0.0),
    "vpga": dict(z_dim=32, lr=0.1, zn_rec=6e-2, zh_rec=0.0, nll=0.0, vrec=1e-2, vkld=3e-2),
}
VARIATIONAL = {"vpga"}
FROZEN_MODES = ("weights", "two_pass")
LOG_VAR_BIAS_INIT = 2.0 * math.log(0.1)


# ------------------------------------------------------------------------------------ nets
def param_shapes(z_dim: int, variational: bool) -> dict[str, tuple[int, ...]]:
    """Every trainable tensor, in torch layout (conv OIHW, deconv [in, out, kh, kw], fc [out, in])."""
    flat = 7 * 7 * DIM * 2
    shapes = {
        "enc.conv1.w": (DIM, CHANNELS, 5, 5), "enc.conv1.b": (DIM,),
        "enc.conv2.w": (DIM * 2, DIM, 5, 5), "enc.conv2.b": (DIM * 2,),
        "enc.fc.w": (1024, flat), "enc.fc.b": (1024,),
        "enc.mu.w": (z_dim, 1024), "enc.mu.b": (z_dim,),
    }
    if variational:
        shapes.update({"enc.log_var.w": (z_dim, 1024), "enc.log_var.b": (z_dim,)})
    shapes.update({
        "dec.fc1.w": (1024, z_dim), "dec.fc1.b": (1024,),
        "dec.fc2.w": (flat, 1024), "dec.fc2.b": (flat,),
        "dec.dconv1.w": (DIM * 2, DIM, 5, 5), "dec.dconv1.b": (DIM,),
        "dec.dconv2.w": (DIM, CHANNELS, 5, 5), "dec.dconv2.b": (CHANNELS,),
    })
    return shapes


def init_params(z_dim: int, variational: bool, seed: int) -> dict[str, torch.Tensor]:
    """Glorot-uniform kernels, zero biases (log_var bias 2 ln 0.1), as pga_tf; leaf tensors."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in param_shapes(z_dim, variational).items():
        if name.endswith(".b"):
            t = torch.full(shape, LOG_VAR_BIAS_INIT if name == "enc.log_var.b" else 0.0)
        else:
            receptive = math.prod(shape[2:]) if len(shape) == 4 else 1
            limit = math.sqrt(6.0 / ((shape[0] + shape[1]) * receptive))  # fan_in + fan_out
            t = (torch.rand(shape, generator=g) * 2 - 1) * limit
        params[name] = t.requires_grad_(True)
    return params


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_same(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int) -> torch.Tensor:
    """conv2d with TF 'SAME' padding (asymmetric for these layers: explicit pad, then VALID)."""
    (t, bo), (le, r) = _same_pad(x.shape[2], w.shape[2], stride), _same_pad(x.shape[3], w.shape[3], stride)
    return F.conv2d(F.pad(x, (le, r, t, bo)), w, b, stride=stride)


def deconv_same(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int) -> torch.Tensor:
    """TF conv2d_transpose 'SAME' (output = stride * input): the adjoint of the 'SAME' conv.

    That conv pads `before` rows first, so the transposed conv's full output is cropped by
    `before` at the start and cut to stride * size: torch's padding=before crops `before` at
    both ends; the rest is sliced off.
    """
    h, wd = x.shape[2] * stride, x.shape[3] * stride
    before_h, before_w = _same_pad(h, w.shape[2], stride)[0], _same_pad(wd, w.shape[3], stride)[0]
    y = F.conv_transpose2d(x, w, b, stride=stride, padding=(before_h, before_w))
    assert y.shape[2] >= h and y.shape[3] >= wd, y.shape
    return y[:, :, :h, :wd]


def encoder(p: dict, x: torch.Tensor, variational: bool):
    """NCHW images in [-1, 1] -> (mu, log_var or None)."""
    y = F.leaky_relu(conv_same(x, p["enc.conv1.w"], p["enc.conv1.b"], 2), 0.2)
    y = F.leaky_relu(conv_same(y, p["enc.conv2.w"], p["enc.conv2.b"], 2), 0.2)
    y = F.leaky_relu(F.linear(y.flatten(1), p["enc.fc.w"], p["enc.fc.b"]), 0.2)
    mu = F.linear(y, p["enc.mu.w"], p["enc.mu.b"])
    return mu, (F.linear(y, p["enc.log_var.w"], p["enc.log_var.b"]) if variational else None)


def decoder(p: dict, z: torch.Tensor) -> torch.Tensor:
    y = F.relu(F.linear(z, p["dec.fc1.w"], p["dec.fc1.b"]))
    y = F.relu(F.linear(y, p["dec.fc2.w"], p["dec.fc2.b"]))
    y = y.view(-1, DIM * 2, 7, 7)
    y = F.relu(deconv_same(y, p["dec.dconv1.w"], p["dec.dconv1.b"], 2))
    return torch.tanh(deconv_same(y, p["dec.dconv2.w"], p["dec.dconv2.b"], 2))


# ------------------------------------------------------------------------------ objectives
def squared_error(target, prediction):
    return (target - prediction).square().flatten(1).mean(1)


def prior_nll(z):
    """-log N(z; 0, I) / z_dim per example."""
    d = z.shape[1]
    return (0.5 * z.square().sum(1) + 0.5 * d * math.log(2.0 * math.pi)) / d


def lpga_direction(noise):
    """tf.math.l2_normalize(noise, axis=1) * 1e-2 * sqrt(z_dim)."""
    d = noise.shape[1]
    return noise * torch.rsqrt(noise.square().sum(1, keepdim=True).clamp_min(1e-12)) * (1e-2 * math.sqrt(d))


def log_det_loss(h_z, h_z_delta, delta):
    """(z_dim / 2) log ||(h(z + delta) - h(z)) / ||delta|| ||^2 / z_dim, ||delta|| constant."""
    d = h_z.shape[1]
    norm = delta.norm(dim=1, keepdim=True).detach()
    jvp = (h_z_delta - h_z) / norm
    return 0.5 * d * torch.log(jvp.square().sum(1)) / d


def vae_reconstruction(h_mu, h_noisy, mu_rms):
    return squared_error(h_mu / mu_rms, h_noisy / mu_rms)


def vae_kl(mu, log_var):
    return -(0.5 * (1.0 + log_var - mu.square() - log_var.exp())).mean(1)


class Noise(NamedTuple):
    prior: torch.Tensor
    direction: torch.Tensor
    posterior: torch.Tensor


def method_losses(method: str, p: dict, images: torch.Tensor, noise: Noise, c: dict,
                  frozen: str = "weights"):
    """(encoder loss [N], decoder loss [N], terms) of pga_tf.step.method_losses (BN off)."""
    variational = method in VARIATIONAL

    def encode(x):
        return encoder(p, x, variational)

    def h(z):
        x = decoder(p, z)
        return encode(x)[0], x

    mu, log_var = encode(images)
    img_rec = squared_error(images, decoder(p, mu))
    mu_const = mu.detach()
    zn_rec = squared_error(noise.prior, h(noise.prior)[0])
    h_mu, x_mu = h(mu_const)
    zh_rec = squared_error(mu_const, h_mu)
    terms = {"img_rec": img_rec, "zn_rec": zn_rec, "zh_rec": zh_rec}
    enc = img_rec + c["zn_rec"] * zn_rec + c["zh_rec"] * zh_rec
    dec = img_rec

    if method == "lpga":
        delta = lpga_direction(noise.direction)
        terms["nll_enc"] = prior_nll(mu)
        terms["nll_dec"] = log_det_loss(h_mu, h(mu_const + delta)[0], delta)
        enc = enc + c["nll"] * terms["nll_enc"]
        dec = dec + c["nll"] * terms["nll_dec"]
        return enc, dec, terms
    if method != "vpga":
        raise ValueError(f"unknown method {method!r}")

    z_noisy = mu_const + torch.exp(0.5 * log_var) * noise.posterior
    if frozen == "weights":
        # One pass of the encoder with its weights detached: the value of E(x), a gradient to
        # x (hence the decoder) and none to the encoder's weights.
        fp = {k: (v.detach() if k.startswith("enc.") else v) for k, v in p.items()}
        h_mu_frozen = encoder(fp, x_mu, True)[0]
        h_noisy = encoder(fp, decoder(p, z_noisy), True)[0]
    elif frozen == "two_pass":
        def frozen_encoder(z_rec, x):
            return z_rec - encode(x.detach())[0] + z_rec.detach()
        h_mu_frozen = frozen_encoder(h_mu, x_mu)
        h_noisy = frozen_encoder(*h(z_noisy))
    else:
        raise ValueError(f"unknown --vpga_frozen {frozen!r}")
    terms["vkld"] = vae_kl(mu, log_var)
    mu_rms = mu.square().mean(0).sqrt().detach()
    terms["vrec"] = vae_reconstruction(h_mu_frozen, h_noisy, mu_rms)
    enc = enc + c["vrec"] * terms["vrec"] + c["vkld"] * terms["vkld"]
    dec = dec + c["vrec"] * terms["vrec"]
    return enc, dec, terms


# ------------------------------------------------------------------------------------ step
class Trainer:
    def __init__(self, method: str, params: dict, frozen: str = "weights", lr: float | None = None,
                 coefficients: dict | None = None):
        self.method = method
        self.frozen = frozen
        self.params = params
        self.coefficients = coefficients or {k: METHODS[method][k] for k in ("zn_rec", "zh_rec", "nll", "vrec", "vkld")}
        self.enc_params = [v for k, v in params.items() if k.startswith("enc.")]
        self.dec_params = [v for k, v in params.items() if k.startswith("dec.")]
        self.z_dim = params["enc.mu.b"].shape[0]
        self.optimizer = torch.optim.SGD(self.enc_params + self.dec_params,
                                         lr=METHODS[method]["lr"] if lr is None else lr, momentum=0.9)

    def draw_noise(self, n: int) -> Noise:
        return Noise(*(torch.randn(n, self.z_dim) for _ in range(3)))

    def gradients(self, images: torch.Tensor, noise: Noise):
        enc, dec, terms = method_losses(self.method, self.params, images, noise, self.coefficients, self.frozen)
        enc_loss, dec_loss = enc.mean(), dec.mean()
        g_enc = torch.autograd.grad(enc_loss, self.enc_params, retain_graph=True)
        g_dec = torch.autograd.grad(dec_loss, self.dec_params)
        return (enc, dec, terms), list(g_enc) + list(g_dec)

    def step(self, images: torch.Tensor, noise: Noise | None = None):
        if noise is None:
            noise = self.draw_noise(images.shape[0])
        out, grads = self.gradients(images, noise)
        for v, g in zip(self.enc_params + self.dec_params, grads):
            v.grad = g
        self.optimizer.step()
        return out


# ----------------------------------------------------------------------- Keras <-> torch
FLAT_HWC = (7, 7, DIM * 2)  # the Keras (NHWC) layout of the 6272-wide fc side


def from_keras(name: str, a: np.ndarray) -> np.ndarray:
    """A weight (or gradient) in the Keras layout -> the torch layout of `name`."""
    h, w, c = FLAT_HWC
    if name.endswith(".b"):
        if name == "dec.fc2.b":  # output index (h, w, c) -> (c, h, w)
            return a.reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
        return a
    if name in ("enc.conv1.w", "enc.conv2.w"):  # HWIO -> OIHW
        return a.transpose(3, 2, 0, 1)
    if name.startswith("dec.dconv"):  # [kh, kw, out, in] -> [in, out, kh, kw]
        return a.transpose(3, 2, 0, 1)
    if name == "enc.fc.w":  # [(h, w, c), out] -> [out, (c, h, w)]
        return a.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(a.shape[1], -1)
    if name == "dec.fc2.w":  # [in, (h, w, c)] -> [(c, h, w), in]
        return a.reshape(-1, h, w, c).transpose(3, 1, 2, 0).reshape(-1, a.shape[0])
    return a.T  # Dense [in, out] -> [out, in]


# ----------------------------------------------------------------------------------- check
def _rel(x: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max |x - ref|, that / max |ref|), in float64."""
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    assert x.shape == ref.shape, (x.shape, ref.shape)
    diff = float(np.max(np.abs(x - ref))) if x.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return diff, (diff / scale if scale > 0 else diff)


def _port_run(d, method: str, names: list[str], coeffs: dict, mode: str, dtype: torch.dtype) -> dict:
    """Every checked quantity of the port, from the dump's weights/inputs/noise, in `dtype`."""
    def fresh() -> dict:
        return {n: torch.from_numpy(np.ascontiguousarray(from_keras(n, d[f"w/{n}"]))).to(dtype).requires_grad_(True)
                for n in names}
    images = torch.from_numpy(np.ascontiguousarray(d["images"].transpose(0, 3, 1, 2))).to(dtype)
    noise = Noise(*(torch.from_numpy(d[f"noise/{k}"]).to(dtype) for k in Noise._fields))
    lr = float(d["lr"])
    out = {}
    (enc, dec, terms), grads = Trainer(method, fresh(), mode, lr=lr, coefficients=coeffs).gradients(images, noise)
    for t in sorted(terms):
        out[f"term {t}"] = terms[t].detach().double().numpy()
    out["encoder loss"] = enc.detach().double().numpy()
    out["decoder loss"] = dec.detach().double().numpy()
    for n, g in zip(names, grads):
        out[f"grad {n}"] = g.double().numpy()
    # Full steps (losses, gradients, SGD momentum) with the same batch and noise: each weight's change.
    trainer = Trainer(method, fresh(), mode, lr=lr, coefficients=coeffs)
    before = {n: v.detach().clone() for n, v in trainer.params.items()}
    for _ in range(int(d["update_steps"])):
        trainer.step(images, noise)
    for n in names:
        out[f"update {n}"] = (trainer.params[n].detach() - before[n]).double().numpy()
    return out


def _tf_value(d, key: str) -> np.ndarray:
    kind, name = key.split(" ", 1)
    if kind == "term":
        return d[f"term/{name}"]
    if kind in ("encoder", "decoder"):
        return d[f"loss/{kind}"]
    if kind == "grad":
        return from_keras(name, d[f"grad/{name}"])
    return (from_keras(name, d[f"after/{name}"]).astype(np.float64)
            - from_keras(name, d[f"w/{name}"]).astype(np.float64))


def check(path: str, rtol: float, modes: list[str] | None, f32_factor: float, strict: bool) -> bool:
    """Compare the port with a dump_tf_step.py dump; True if every quantity passes.

    Checked: every loss term and both losses (per example, and their batch means), the gradient
    of every weight, and every weight's change over the dump's update steps. A quantity passes if
    rel = max |torch32 - TF| / max |TF| <= rtol. Some quantities cannot be
    computed to that accuracy in float32 by anyone: the log-det finite difference
    h(z + delta) - h(z) loses digits to cancellation, and the gradient of its log divides by
    it. To tell that apart from a wrong port, the port also runs in float64 from the same
    float32 weights, inputs and noise: its distance to TF (TF's float32 error, if the port
    computes the same function) is compared with torch32's own distance to it. Without
    `strict`, a quantity over rtol still passes, marked "f32-limited", if
    rel(TF, torch64) <= max(rtol, f32_factor * rel(torch32, torch64)).
    """
    d = np.load(path)
    method = str(d["method"])
    variational = method in VARIATIONAL
    z_dim = int(d["z_dim"])
    names = list(param_shapes(z_dim, variational))
    coeffs = {k: float(d[f"coeff/{k}"]) for k in ("zn_rec", "zh_rec", "nll", "vrec", "vkld")}
    if modes is None:
        modes = list(FROZEN_MODES) if method == "vpga" else ["weights"]
    print(f"check {path}: method {method}, batch {d['images'].shape[0]}, z_dim {z_dim}, lr {float(d['lr'])}, "
          f"coefficients {coeffs}, {int(d['update_steps'])} update steps; dump from TF {d['tf_version']}, "
          f"pga_tf fast kernels {'on' if bool(d['fast_kernels']) else 'off'}; torch {torch.__version__}")
    all_ok = True
    for mode in modes:
        t32 = _port_run(d, method, names, coeffs, mode, torch.float32)
        t64 = _port_run(d, method, names, coeffs, mode, torch.float64)
        quantities = []  # (label, torch32, torch64, TF)
        for key in t32:
            tf_v = np.asarray(_tf_value(d, key), np.float64)
            quantities.append((key, t32[key], t64[key], tf_v))
            if key.startswith(("term", "encoder", "decoder")):  # what the step reports: batch means
                quantities.append((f"{key} (batch mean)", t32[key].mean(keepdims=True),
                                   t64[key].mean(keepdims=True), tf_v.mean(keepdims=True)))
        rows = []
        for key, v32, v64, tf_v in quantities:
            diff, rel = _rel(v32, tf_v)
            _, e_tf = _rel(tf_v, v64)
            _, e_t = _rel(v32, v64)
            finite = bool(np.all(np.isfinite(v32)))
            if finite and rel <= rtol:
                verdict = "ok"
            elif finite and not strict and e_tf <= max(rtol, f32_factor * e_t):
                verdict = "ok (f32-limited)"
            else:
                verdict = "FAIL"
            rows.append((key, diff, rel, e_tf, e_t, verdict))
        ok = all(r[-1] != "FAIL" for r in rows)
        label = method + (f" (vpga_frozen={mode})" if method == "vpga" else "")
        print(f"\n{label}: {'OK' if ok else 'FAIL'}  (rel = max|torch32 - TF| / max|TF|, tolerance {rtol:g}; "
              f"TF-vs-t64 and t32-vs-t64: relative distance of each float32 result to the port in float64)")
        width = max(len(r[0]) for r in rows)
        print(f"  {'quantity':<{width}}  {'max abs diff':>12}  {'rel':>9}  {'TF-vs-t64':>9}  {'t32-vs-t64':>10}")
        for key, diff, rel, e_tf, e_t, verdict in rows:
            print(f"  {key:<{width}}  {diff:12.3e}  {rel:9.2e}  {e_tf:9.2e}  {e_t:10.2e}  {verdict}")
        strict_worst = max(rows, key=lambda r: r[2])
        print(f"  worst rel: {strict_worst[0]} {strict_worst[2]:.2e}; over {rtol:g}: "
              f"{sum(r[2] > rtol for r in rows)} of {len(rows)}")
        all_ok &= ok
    return all_ok


# ----------------------------------------------------------------------------------- bench
def cpu_model() -> str:
    return machine.cpuinfo().get("model name") or platform.processor() or "unknown"


def cpu_simd_flags() -> list[str]:
    """The vector-extension flags of /proc/cpuinfo that matter to float32 conv/matmul speed."""
    flags = set(machine.cpuinfo().get("flags", "").split())
    return sorted(f for f in flags if f in {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                           "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile"})


def matmul_peak(n: int, blocks: int = 5, calls: int = 5) -> float:
    """float32 GFLOP/s of torch.mm on [n, n] x [n, n] (median over blocks): what this torch's
    BLAS reaches on this CPU, for reading the step's figure (pga_tf.tools.bench measures TF's)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    rates = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        rates.append(calls * 2.0 * n ** 3 / 1e9 / (time.perf_counter() - t0))
    return statistics.median(rates)


def bench(method: str, args) -> dict:
    spec = METHODS[method]
    torch.manual_seed(args.seed)
    params = init_params(spec["z_dim"], method in VARIATIONAL, args.seed)
    trainer = Trainer(method, params, args.vpga_frozen)
    # One fixed batch in [-1, 1], as pga_tf.tools.bench's fixed-batch figure; noise is drawn every step.
    images = torch.rand(args.batch_size, CHANNELS, HW, HW, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
    for _ in range(args.warmup):
        trainer.step(images)
    rates = []
    load_before = os.getloadavg()[0]
    for _ in range(args.blocks):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.step(images)
        rates.append(args.steps * args.batch_size / (time.perf_counter() - t0))
    final = trainer.step(images)
    finite = all(bool(torch.isfinite(v).all()) for v in (final[0], final[1]))
    median = statistics.median(rates)
    # Sampling as pga_tf.tools.bench measures it: the decoder alone on --sample_batch codes, no autograd.
    z = torch.randn(args.sample_batch, spec["z_dim"], generator=torch.Generator().manual_seed(args.seed))
    sample_rates = []
    with torch.inference_mode():
        for _ in range(3):
            decoder(trainer.params, z)
        for _ in range(args.blocks):
            t0 = time.perf_counter()
            for _ in range(args.sample_calls):
                decoder(trainer.params, z)
            sample_rates.append(args.sample_calls * args.sample_batch / (time.perf_counter() - t0))
    return {
        "sample_images_per_s": statistics.median(sample_rates),
        "sample_batch": args.sample_batch,
        "train_images_per_s_fixed_batch": median,
        "ms_per_step": 1000.0 * args.batch_size / median,
        "block_images_per_s": rates,
        "vpga_frozen": args.vpga_frozen if method == "vpga" else None,
        "z_dim": spec["z_dim"],
        "losses_finite_after_timing": finite,
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="lpga,vpga", help="comma-separated: lpga, vpga")
    ap.add_argument("--blocks", type=int, default=7, help="timed blocks (the median is reported)")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--sample_batch", type=int, default=256, help="codes per decoder call when timing sampling")
    ap.add_argument("--sample_calls", type=int, default=10, help="decoder calls per timed sampling block")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vpga_frozen", choices=FROZEN_MODES, default="weights",
                    help="VPGA's no-encoder-gradient paths: one pass with detached encoder weights "
                         "(default) or the reference's z - E(sg(x)) + sg(z) (two passes)")
    ap.add_argument("--matmul_n", type=int, default=2048, help="size of the matmul peak measurement (0: skip)")
    ap.add_argument("--json", default="", help="write the results here")
    ap.add_argument("--check", default="", help="compare against a benchmarks/dump_tf_step.py .npz and exit")
    ap.add_argument("--check_modes", default="", help="vpga_frozen modes to check (default: all for VPGA)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="--check tolerance: max abs diff / max |TF value|")
    ap.add_argument("--f32_factor", type=float, default=10.0,
                    help="--check: a quantity over --rtol passes as float32-limited if TF is within this "
                         "factor of torch32's own distance to the float64 port (see check())")
    ap.add_argument("--strict", action="store_true", help="--check: fail on anything over --rtol")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.check:
        modes = args.check_modes.split(",") if args.check_modes else None
        return 0 if check(args.check, args.rtol, modes, args.f32_factor, args.strict) else 1

    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    info = {
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "cpu": machine.cpu_model(),  # the same string as pga_tf.tools.bench's "cpu"
        "cpu_model": cpu_model(),
        "cpu_simd_flags": cpu_simd_flags(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "eager": True,
        "dtype": "float32",
        "batch_size": args.batch_size,
        "blocks": args.blocks, "steps": args.steps, "warmup": args.warmup,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    info["matmul_n"] = args.matmul_n
    info["matmul_peak_gflop_per_s"] = matmul_peak(args.matmul_n) if args.matmul_n else None
    peak = f"{info['matmul_peak_gflop_per_s']:.0f}" if args.matmul_n else "not measured"
    print(f"torch {info['torch_version']} (eager, float32, {info['torch_num_threads']} threads), "
          f"CPU: {info['cpu_model']} x{info['cpu_count']}; torch.mm {args.matmul_n}^3: {peak} GFLOP/s; "
          f"batch {args.batch_size}, {args.blocks} blocks x {args.steps} steps after {args.warmup} warm-up steps")
    results = {}
    for m in methods:
        r = bench(m, args)
        results[m] = r
        extra = f", vpga_frozen={r['vpga_frozen']}" if r["vpga_frozen"] else ""
        print(f"{m}: {r['train_images_per_s_fixed_batch']:.1f} img/s (median; {r['ms_per_step']:.1f} ms/step{extra}; "
              f"sampling {r['sample_images_per_s']:.0f} img/s at batch {r['sample_batch']}; "
              f"blocks {', '.join(f'{x:.0f}' for x in r['block_images_per_s'])}; "
              f"load {r['load_before']} -> {r['load_after']})", flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({**info, "methods": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
