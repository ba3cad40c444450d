"""Commands built on the library, each run as `python -m pga_tf.tools.<name>`:

results (the results tables, the reference and fair protocols; comparison.py and
comparison_report.py hold the fair protocol), bench (training and sampling speed), standins
(CIFAR-10/CelebA stand-in images), log_det_precision (the log-det estimator under 16-bit
policies). curves.py reads FID curves back from TensorBoard.
"""
