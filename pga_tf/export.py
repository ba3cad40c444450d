"""SavedModel export of a trained encoder/decoder pair.

The export is a tf.Module whose signatures run the models in inference mode (batch norm with its
moving statistics), so served samples do not depend on the serving batch.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import tensorflow as tf


class ExportError(Exception):
    """A user-caused export problem (existing output, unwritable dir); the message is one line."""


class PGAServing(tf.Module):
    """decode / encode / reconstruct / sample signatures around an encoder and a decoder."""

    def __init__(self, encoder: tf.keras.Model, decoder: tf.keras.Model, z_dim: int,
                 image_shape: tuple[int, int, int], variational: bool):
        super().__init__(name="pga")
        self.encoder = encoder
        self.decoder = decoder
        self.z_dim = z_dim
        self.image_shape = tuple(int(d) for d in image_shape)
        self.variational = variational
        image_spec = tf.TensorSpec([None, None, None, None], tf.float32, name="images")
        self.decode = tf.function(self._decode, input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="z")])
        self.encode = tf.function(self._encode, input_signature=[image_spec])
        self.reconstruct = tf.function(self._reconstruct, input_signature=[image_spec])
        self.sample = tf.function(self._sample, input_signature=[
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int64, name="seed")])

    def _check_z(self, z):
        tf.debugging.assert_rank(z, 2, message="decode: z must have shape [N, z_dim]")
        tf.debugging.assert_equal(tf.shape(z)[1], self.z_dim,
                                  message=f"decode: z must have shape [N, {self.z_dim}]")
        return tf.ensure_shape(z, [None, self.z_dim])

    def _check_images(self, images):
        h, w, c = self.image_shape
        message = f"images must have shape [N, {h}, {w}, {c}] with values in [-1, 1]"
        tf.debugging.assert_rank(images, 4, message=message)
        tf.debugging.assert_equal(tf.shape(images)[1:], tf.constant([h, w, c]), message=message)
        return tf.ensure_shape(images, [None, h, w, c])

    def _images(self, z):
        return {"images": self.decoder(z, training=False)}

    def _decode(self, z):
        return self._images(self._check_z(z))

    def _encode(self, images):
        out = self.encoder(self._check_images(images), training=False)
        if self.variational:
            return {"mu": out[0], "log_var": out[1]}
        return {"mu": out}

    def _mu(self, images):
        out = self.encoder(images, training=False)
        return out[0] if self.variational else out

    def _reconstruct(self, images):
        return self._images(self._mu(self._check_images(images)))

    def _sample(self, num_samples, seed):
        tf.debugging.assert_non_negative(num_samples, message="sample: num_samples must be >= 0")
        # A stateless draw, so the same seed gives the same images in any process.
        z = tf.random.stateless_normal(tf.stack([num_samples, self.z_dim]),
                                       seed=tf.stack([seed, tf.constant(0, tf.int64)]))
        return self._images(z)


def export(module: PGAServing, export_dir: str, overwrite: bool = False) -> str:
    """Write `module` as a SavedModel at `export_dir`; never leaves a half-written export.

    The SavedModel is written to a temporary sibling and renamed into place, so an existing export
    survives a failed write.
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        raise ExportError(f"export dir {export_dir} already exists; pass --overwrite to replace it")
    parent = os.path.dirname(export_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    except OSError as e:
        raise ExportError(f"cannot write to {parent}: {e.strerror}") from None
    try:
        signatures = {
            "serving_default": module.sample,
            "sample": module.sample,
            "decode": module.decode,
            "encode": module.encode,
            "reconstruct": module.reconstruct,
        }
        tf.saved_model.save(module, tmp, signatures=signatures)
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.replace(tmp, export_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"cannot write the SavedModel to {export_dir}: {e.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir
