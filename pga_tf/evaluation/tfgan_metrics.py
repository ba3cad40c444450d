"""TF-GAN's FID/KID code (tensorflow_gan/python/eval/classifier_metrics.py), importable on TF 2.16+.

`import tensorflow_gan` fails on TF >= 2.16: its package __init__ pulls in the estimator module,
which needs `tf.estimator` (gone). The metrics file itself only needs TensorFlow, TFP and its
sibling `eval_utils.py`. This module loads those two files straight from the installed package,
without running any of the package's __init__ files, and re-exports the functions we use.

While loading, placeholder package modules stand in for `tensorflow_gan`, `tensorflow_gan.python`
and `tensorflow_gan.python.eval` (so `from tensorflow_gan.python.eval import eval_utils` inside
the file resolves to the file we loaded); they are removed again afterwards, so a later
`import tensorflow_gan` behaves as it would without us.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

_PACKAGE = "tensorflow_gan"
_EVAL_PACKAGE = "tensorflow_gan.python.eval"


class TFGANUnavailable(ImportError):
    """tensorflow-gan is not installed, or its eval files are missing or changed."""


def _eval_dir() -> str:
    try:
        spec = importlib.util.find_spec(_PACKAGE)  # finds the package without importing it
    except (ImportError, ValueError) as e:
        raise TFGANUnavailable(f"cannot locate {_PACKAGE}: {e}") from None
    if spec is None or not spec.submodule_search_locations:
        raise TFGANUnavailable(f"{_PACKAGE} is not installed (pip install tensorflow-gan)")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "python", "eval")
        if os.path.isfile(os.path.join(path, "classifier_metrics.py")):
            return path
    raise TFGANUnavailable(f"{_PACKAGE} has no python/eval/classifier_metrics.py")


def _load_file(name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load() -> types.ModuleType:
    eval_dir = _eval_dir()
    # Placeholders only for names nobody has imported yet; restored in `finally`.
    placeholders = {}
    for name in (_PACKAGE, "tensorflow_gan.python", _EVAL_PACKAGE):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = []  # a package, but nothing can be imported from it by search
            placeholders[name] = pkg
    sys.modules.update(placeholders)
    loaded = []
    try:
        for stem in ("eval_utils", "classifier_metrics"):
            name = f"{_EVAL_PACKAGE}.{stem}"
            if name in sys.modules and name not in loaded:
                continue  # already importable (e.g. a future tensorflow_gan that works)
            module = _load_file(name, os.path.join(eval_dir, stem + ".py"))
            setattr(sys.modules[_EVAL_PACKAGE], stem, module)
            loaded.append(name)
        return sys.modules[f"{_EVAL_PACKAGE}.classifier_metrics"]
    except ImportError as e:
        raise TFGANUnavailable(f"cannot load TF-GAN's classifier_metrics.py: {e}") from None
    finally:
        # Keep the loaded files reachable through this module, not through sys.modules: a stale
        # half-package under the real name would confuse a later `import tensorflow_gan`.
        for name in loaded:
            sys.modules.pop(name, None)
        for name in placeholders:
            sys.modules.pop(name, None)


classifier_metrics = _load()

frechet_classifier_distance_from_activations = classifier_metrics.frechet_classifier_distance_from_activations
kernel_classifier_distance_and_std_from_activations = (
    classifier_metrics.kernel_classifier_distance_and_std_from_activations
)
trace_sqrt_product = classifier_metrics.trace_sqrt_product

__all__ = [
    "classifier_metrics",
    "frechet_classifier_distance_from_activations",
    "kernel_classifier_distance_and_std_from_activations",
    "trace_sqrt_product",
    "TFGANUnavailable",
]
