"""The 2-Stage VAE (Dai & Wipf, ICLR 2019; daib13/TwoStageVAE) on the PGA nets
(pga_tf/methods/two_stage_vae.py).

Defaults: the official demo.py's, latent-dim 64, Adam at lr 1e-4 (PGA's SGD at lr 0.1 sends its
loss to NaN within a few steps). Its KL weight is 1 and its decoder variance is learned, so no
coefficient applies. Its second stage trains after the first, for --stage2_steps steps or
--stage2_ratio times the first stage's (the official epochs2 / epochs = 800 / 400).
"""

from pga_tf.methods import Method


def stage2_steps(cfg, stage1_steps: int) -> int:
    """Steps of the second stage after `stage1_steps` first-stage steps: --stage2_steps, or
    --stage2_ratio times stage 1's, at least 1."""
    if cfg.stage2_steps > 0:
        return cfg.stage2_steps
    return max(1, round(cfg.stage2_ratio * stage1_steps))


_MODULE = "pga_tf.methods.two_stage_vae"

METHODS = (
    Method(
        name="two_stage_vae",
        label="2-Stage VAE",
        claim="learned_prior",
        paper="Dai & Wipf, Diagnosing and Enhancing VAE Models, ICLR 2019 (daib13/TwoStageVAE)",
        losses=f"{_MODULE}:losses",
        family="two_stage_vae",
        variational=True,
        decoder_scale=True,
        sampler="two_stage",
        samplers={"two_stage": f"{_MODULE}:build_sampler"},
        parts=f"{_MODULE}:build_parts",
        later_phases=f"{_MODULE}:later_phases",
        later_steps=stage2_steps,
        resume_keys=("stage2_depth", "stage2_width"),
        order=50,
        defaults=dict(
            z_dim=64, init_steps=0, zn_rec=0.0, zh_rec=0.0, nll=0.0, vrec=0.0, vkld=0.0, optimizer="adam", lr=1e-4
        ),
    ),
)
