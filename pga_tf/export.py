"""SavedModel export of a trained encoder/decoder pair.

The export is a tf.Module whose signatures run the models in inference mode (batch norm with its
moving statistics), so served samples do not depend on the serving batch:

  decode(z: float32 [N, z_dim])                 -> images: float32 [N, H, W, C] in [-1, 1]
  encode(images: float32 [N, H, W, C])          -> mu: float32 [N, z_dim] (+ log_var if variational)
  reconstruct(images: float32 [N, H, W, C])     -> images: D(mu)
  sample(num_samples: int32 [], seed: int64 []) -> images: D(z), z drawn from `seed` by the
                                                 export's latent sampler (samplers.py; prior:
                                                 z ~ N(0, I))
  serving_default = sample

Every signature takes N = 0 and returns empty outputs of these shapes. The sampler's parameters
(a GMM's weights, means and Cholesky factors) are variables of the module, so the SavedModel
serves without scikit-learn; `sampler_kind` (a string variable) names it.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import tensorflow as tf

from pga_tf import samplers
from pga_tf.export_paths import ExportError, check_destination


class PGAServing(tf.Module):
    """decode / encode / reconstruct / sample signatures around an encoder and a decoder."""

    def __init__(
        self,
        encoder: tf.keras.Model,
        decoder: tf.keras.Model,
        z_dim: int,
        image_shape: tuple[int, int, int],
        variational: bool,
        sampler: samplers.LatentSampler | None = None,
    ):
        super().__init__(name="pga")
        self.encoder = encoder
        self.decoder = decoder
        self.z_dim = z_dim
        self.sampler = sampler or samplers.PriorSampler(z_dim)
        if self.sampler.z_dim != z_dim:
            raise ValueError(f"sampler draws z_dim {self.sampler.z_dim}, the decoder takes {z_dim}")
        self.sampler_kind = tf.Variable(self.sampler.kind, trainable=False, name="sampler_kind")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.variational = variational
        # Static shapes in the specs document the signatures (saved_model_cli shows them). A
        # loaded signature does not check them, so each function re-checks its input at run time.
        image_spec = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        self.decode = tf.function(self._decode, input_signature=[tf.TensorSpec([None, z_dim], tf.float32, name="z")])
        self.encode = tf.function(self._encode, input_signature=[image_spec])
        self.reconstruct = tf.function(self._reconstruct, input_signature=[image_spec])
        self.sample = tf.function(
            self._sample,
            input_signature=[tf.TensorSpec([], tf.int32, name="num_samples"), tf.TensorSpec([], tf.int64, name="seed")],
        )

    # tf.ensure_shape is the check that survives in a loaded SavedModel: assertions on the rank
    # are folded away against the spec's static shape. Its message names the tensor, the shape it
    # got and the one expected, e.g. "Shape of tensor z [2,5] is not compatible with expected
    # shape [?,4]."
    def _check_z(self, z: tf.Tensor) -> tf.Tensor:
        return tf.ensure_shape(z, [None, self.z_dim])

    def _check_images(self, images: tf.Tensor) -> tf.Tensor:
        return tf.ensure_shape(images, [None, *self.image_shape])

    def _images(self, z: tf.Tensor) -> dict:
        # oneDNN's convolutions reject an empty batch ("Must provide as many biases as the last
        # dimension of the input"), so N = 0 takes a branch that runs no layer at all.
        return _unless_empty(z, lambda z: {"images": self.decoder(z, training=False)}, {"images": [*self.image_shape]})

    def _mu(self, images: tf.Tensor) -> tf.Tensor:
        return self._encode(images)["mu"]

    def _decode(self, z):
        return self._images(self._check_z(z))

    def _encode(self, images):
        def run(images):
            out = self.encoder(images, training=False)
            return {"mu": out[0], "log_var": out[1]} if self.variational else {"mu": out}

        names = ("mu", "log_var") if self.variational else ("mu",)
        return _unless_empty(self._check_images(images), run, {k: [self.z_dim] for k in names})

    def _reconstruct(self, images):
        return self._images(self._mu(images))

    def _sample(self, num_samples, seed):
        check = tf.debugging.assert_non_negative(num_samples, message="sample: num_samples must be >= 0")
        with tf.control_dependencies([check]):  # fail on the check, not inside the draw
            num_samples = tf.identity(num_samples)
        # A stateless draw, so the same seed gives the same images in any process.
        return self._images(self.sampler.sample(num_samples, seed))


def _unless_empty(x: tf.Tensor, fn, empty_shapes: dict) -> dict:
    """fn(x), or for an x of 0 rows a dict of float32 zeros of shape [0, *empty_shapes[key]]."""
    return tf.cond(
        tf.shape(x)[0] > 0,
        lambda: fn(x),
        lambda: {k: tf.zeros([0, *shape], tf.float32) for k, shape in empty_shapes.items()},
    )


def from_run(
    run_dir: str,
    sampler: str | None = None,
    options: samplers.Options = samplers.Options(),
    data_dir: str | None = None,
    log=lambda line: None,
) -> PGAServing:
    """A PGAServing of `run_dir`'s latest checkpoint (restored by runs.load, float32 nets).

    `sampler` is what `sample` draws z from (default: the method's own, config.default_sampler);
    `gmm` is fitted here on the codes of the run's training images (`data_dir`, default the run's),
    by `samplers.build` with `options`. The module's `checkpoint` and `step` say what it serves.

    Raises:
      runs.RunError: a dir that is no run, holds no checkpoint, or whose checkpoint does not fit
        its config.json (one line).
      samplers.SamplerError, data.DataError: the sampler cannot be built or fitted.
    """
    from pga_tf import config as config_lib
    from pga_tf import runs

    run = runs.load(run_dir, log=log)
    module = PGAServing(
        run.encoder,
        run.decoder,
        run.cfg.z_dim,
        run.image_shape,
        run.cfg.variational,
        run.sampler(sampler, options, data_dir, log),
    )
    module.checkpoint, module.step = run.checkpoint, run.step  # for the line that reports it
    warning = config_lib.warm_up_unfinished(run.cfg, run.step, f"checkpoint {run.checkpoint}")
    if warning:  # the export serves the warm-up's autoencoder under the method's name
        log(warning)
    return module


def _new_dir(parent: str, prefix: str) -> str:
    """A new uniquely named directory in `parent` with the mode any new directory gets (0777 less
    the umask): tempfile.mkdtemp's 0700 would survive the rename, and a model server running as
    another user could not read the export."""
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def export(module: PGAServing, export_dir: str, overwrite: bool = False) -> str:
    """Write `module` as a SavedModel at `export_dir`; never leaves a half-written export.

    The SavedModel is written to a temporary sibling and renamed into place, so an existing export
    survives a failed write.
    """
    export_dir = check_destination(export_dir, overwrite)
    parent = os.path.dirname(export_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = _new_dir(parent, ".export-")
    except OSError as e:
        # makedirs reports a file in the way as "File exists"; say what is wrong.
        reason = "a file is in the way" if isinstance(e, FileExistsError) else e.strerror
        raise ExportError(f"cannot write to {parent}: {reason}") from None
    try:
        signatures = {
            "serving_default": module.sample,
            "sample": module.sample,
            "decode": module.decode,
            "encode": module.encode,
            "reconstruct": module.reconstruct,
        }
        tf.saved_model.save(module, tmp, signatures=signatures)
        # Move the old export aside before the new one takes its name, so at every moment one
        # complete export sits at export_dir (but for the instant between the two renames).
        old = None
        if os.path.lexists(export_dir):
            old = tempfile.mkdtemp(prefix=".export-old-", dir=parent)
            os.replace(export_dir, old)
        try:
            os.replace(tmp, export_dir)
        except OSError:
            if old is not None:
                os.replace(old, export_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"cannot write the SavedModel to {export_dir}: {e.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir
