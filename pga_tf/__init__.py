"""pga-tf: Perceptual Generative Autoencoders (Zhang et al., ICML 2020) in TensorFlow 2 / Keras."""
