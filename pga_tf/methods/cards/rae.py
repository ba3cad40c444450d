"""RAE (Ghosh et al., ICLR 2020) on the PGA nets (pga_tf/methods/rae.py).

Defaults: its paper's MNIST setting (flags/rae_mnist.cfg converts each coefficient to our
per-pixel-mean MSE): bottleneck 16, embedding weight 1e-4 on mean(z^2), L2 weight 1e-7; it trains
with the PGA nets' SGD, as its flagfiles say. Its samples come from the ex-post GMM
(evaluate.py --sampler=gmm) in its paper; its own sampler here is the prior.
"""

from pga_tf.methods import Method

METHODS = (
    Method(
        name="rae",
        label="RAE",
        claim="simple_prior",
        paper_sampler="gmm",
        paper="Ghosh, Sajjadi, Vergari, Black, Schoelkopf, From "
        "Variational to Deterministic Autoencoders, ICLR 2020, eq. 11",
        losses="pga_tf.methods.rae:losses",
        family="rae",
        order=40,
        defaults=dict(
            z_dim=16,
            init_steps=0,
            zn_rec=0.0,
            zh_rec=0.0,
            nll=0.0,
            vrec=0.0,
            vkld=0.0,
            rae_beta=5e-5,
            rae_lambda=4e-7,
            optimizer="sgd",
            lr=0.1,
        ),
    ),
)
