"""The encoder and decoder nets of the reference (zj10/PGA src/models.py) and their layers.

models.py: Encoder, Decoder, their blocks and forward-mode tangent rules, `build_models`.
kernels.py: the conv / dense layers they are made of (TensorFlow's fast CPU paths).
Nothing here knows a method, a dataset or a run.
"""
