"""The perceptual generative autoencoders (LPGA, VPGA, LVPGA) and the AE/VAE baselines that share
their nets, optimiser and step (pga_tf/methods/pga.py).

Each PGA's defaults are its reference script's argparse defaults (its MNIST setting): zj10/PGA
src/train_lpga.py, train_vpga.py, train_lvpga.py. The reference's VPGA has no warm-up, hence
init_steps 0. The baselines reuse the nets: the VAE takes VPGA's latent size and KL weight so it
differs from VPGA only by the perceptual terms; the AE takes LPGA's latent size. All train with
the reference's momentum SGD at lr 0.1 (their fashion_mnist/mnist flagfiles say the same).
"""

from pga_tf.methods import Method

_SGD = dict(optimizer="sgd", lr=0.1)  # the reference's tf.train.MomentumOptimizer
_NO_LATENT_TERMS = dict(zn_rec=0.0, zh_rec=0.0, nll=0.0, vrec=0.0, vkld=0.0)
_PAPER = "Zhang, Zhang, Li, Bengio, Paull, Perceptual Generative Autoencoders, ICML 2020 (zj10/PGA)"
_LOSSES = "pga_tf.methods.pga:losses"
_FUSED = "pga_tf.methods.pga:fused_losses"
# The finite-difference perturbations of the training steps (the latent likelihood's estimates).
_LPGA_DIRECTION = "pga_tf.methods.pga:lpga_perturbation"
_LVPGA_DIRECTION = "pga_tf.methods.pga:lvpga_perturbation"

METHODS = (
    Method(
        name="ae",
        label="AE",
        paper="a deterministic autoencoder on the PGA nets",
        losses=_LOSSES,
        fused_losses=_FUSED,
        family="pga",
        order=10,
        defaults=dict(z_dim=12, init_steps=0, **_NO_LATENT_TERMS, **_SGD),
    ),
    Method(
        name="vae",
        label="VAE",
        claim="vae_baseline",
        paper="Kingma & Welling, ICLR 2014, on the PGA nets",
        losses=_LOSSES,
        fused_losses=_FUSED,
        family="pga",
        variational=True,
        order=20,
        defaults=dict(z_dim=32, init_steps=0, **{**_NO_LATENT_TERMS, "vkld": 3e-2}, **_SGD),
    ),
    Method(
        name="lpga",
        label="LPGA",
        paper=_PAPER + ", src/train_lpga.py",
        losses=_LOSSES,
        fused_losses=_FUSED,
        family="pga",
        perceptual=True,
        log_det_term="nll_dec",
        forward_mode_log_det=True,
        likelihood={"lpga": _LPGA_DIRECTION},
        order=60,
        defaults=dict(z_dim=12, init_steps=3000, zn_rec=6e-2, zh_rec=0.0, nll=1.5e-2, vrec=0.0, vkld=0.0, **_SGD),
    ),
    Method(
        name="vpga",
        label="VPGA",
        paper=_PAPER + ", src/train_vpga.py",
        losses=_LOSSES,
        fused_losses=_FUSED,
        family="pga",
        perceptual=True,
        variational=True,
        order=70,
        defaults=dict(z_dim=32, init_steps=0, zn_rec=6e-2, zh_rec=0.0, nll=0.0, vrec=1e-2, vkld=3e-2, **_SGD),
    ),
    # LVPGA's log-det perturbation has the posterior's scale: always a finite difference.
    Method(
        name="lvpga",
        label="LVPGA",
        paper=_PAPER + ", src/train_lvpga.py",
        losses=_LOSSES,
        fused_losses=_FUSED,
        family="pga",
        perceptual=True,
        variational=True,
        log_det_term="vrec",
        likelihood={"lvpga": _LVPGA_DIRECTION, "lpga": _LPGA_DIRECTION},
        order=80,
        defaults=dict(z_dim=32, init_steps=3000, zn_rec=6e-2, zh_rec=0.0, nll=1e-2, vrec=1.5e-2, vkld=2e-2, **_SGD),
    ),
)
