"""WAE-MMD (Tolstikhin et al., ICLR 2018) on the PGA nets (pga_tf/methods/wae.py).

Defaults: its paper's MNIST setting (flags/wae_mnist.cfg says how each coefficient is converted to
our per-pixel-mean MSE on [-1, 1] images): z_dim 8, lambda 10 on 0.05 * sum-of-squares over
[0, 1] pixels, Adam at lr 1e-3 (PGA's SGD at lr 0.1 saturates its MMD).
"""

from pga_tf.methods import Method

METHODS = (
    Method(
        name="wae",
        label="WAE",
        claim="simple_prior",
        paper="Tolstikhin, Bousquet, Gelly, Schoelkopf, Wasserstein "
        "Auto-Encoders, ICLR 2018, Algorithm 2 (WAE-MMD, IMQ kernel)",
        losses="pga_tf.methods.wae:losses",
        family="wae",
        order=30,
        defaults=dict(
            z_dim=8,
            init_steps=0,
            zn_rec=0.0,
            zh_rec=0.0,
            nll=0.0,
            vrec=0.0,
            vkld=0.0,
            wae_lambda=1.0204,
            optimizer="adam",
            lr=1e-3,
        ),
    ),
)
