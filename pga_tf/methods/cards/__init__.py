"""The built-in methods' records (one `METHODS` tuple per module), TensorFlow-free: every
module here is read by pga_tf.methods when the registry is first asked."""
