"""Scoring a trained run: sample quality (FID/KID, precision/recall), reconstructions, latent NLL.

evaluators.py: `evaluate_run`, the run's report composed of small evaluators (one per section).
fid.py, tfgan_metrics.py: Frechet and kernel distances; features.py, classifier.py: the domain
classifier whose features they use; precision_recall.py: improved precision and recall;
likelihood.py: exact latent NLL; hparams.py: TensorBoard's HParams record. Importing this
package loads no TensorFlow; its modules do.
"""
