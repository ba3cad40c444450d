"""The method registry: one `Method` record per training method, TensorFlow-free.

Everything the rest of pga-tf needs to know about a method (its flags' defaults, its label in
tables, whether its encoder is variational, its own sampler, the term holding its log-det, its
loss functions, its later training phases) is one field of its record, so no other module
compares method names. The records are read before TensorFlow loads (flags, `pga_tf.tools.results`),
so they name their TensorFlow code by module path ("package.module:attribute"), imported only on
use (`Method.resolve`), as google-research/big_vision picks models by name with importlib.

Where a method's record comes from:
  * a card module in pga_tf/methods/cards/ (the built-in methods; every module there is read);
  * an installed package's entry point in the group "pga_tf.methods" whose object is a Method
    (or a sequence of them), e.g. in its pyproject.toml:
        [project.entry-points."pga_tf.methods"]
        my_method = "my_package.card:METHOD"
  * `register(Method(...))` at run time (a notebook, a test).
docs/ARCHITECTURE.md walks through adding a method.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT = "lpga"  # train.py's --method when none is given: the paper's first method
GROUP = "pga_tf.methods"  # the entry-point group of methods installed by other packages


@dataclasses.dataclass(frozen=True)
class Method:
    """What pga-tf knows about one method.

    Attributes:
      name: the --method value (also config.json's "method").
      label: its name in tables and plots ("LPGA", "2-Stage VAE").
      paper: where its objective comes from (and the code its coefficients follow).
      losses: "module:function" of its loss function, (cfg, encoder, decoder, images [N, H, W, C],
        noise: parts.Noise, step: int64 []) -> parts.Losses, per-example [N] losses.
      defaults: Config fields this method sets when the flags do not (its reference setting).
      variational: the encoder returns (mu, log_var); codes are mu.
      family: the objective family; a family's methods share one loss module and are compared at
        one reference setting (docs/RESULTS.md's 10-epoch table holds the "pga" family).
      perceptual: a perceptual generative autoencoder (the paper's own methods), the side of
        the fair comparison's claims that the others are compared against.
      claim: for a baseline, which of the paper's claims the fair comparison tests against it:
        "vae_baseline" (PGAs improve over the VAE), "simple_prior" (they beat the other models
        with a simple prior), "learned_prior" (how a fixed prior fares against a learned one);
        "" for none (pga_tf/tools/comparison_report.py, CLAIMS).
      fused_losses: "module:function" of the same losses and gradients in fewer passes (batch
        norm off only; methods/pga.py `fused_losses`), or None: the plain step only.
      sampler: the latent sampler of its own generative model (evaluate.py's and the export's
        default); "prior" for z ~ N(0, I).
      paper_sampler: the sampler its paper reports samples with, when that is not `sampler` (RAE:
        "gmm", the ex-post GMM); the fair comparison's verdicts also hold PGA against it so.
      samplers: sampler names this method adds, each "module:builder" with the signature of
        samplers.BUILDERS' values (source, options, log) -> LatentSampler.
      log_det_term: the loss term holding its log ||J_h u|| (named by the non-finite-loss hint).
      forward_mode_log_det: --log_det=jvp computes that term's J_h u exactly (else always a
        finite difference).
      likelihood: the finite-difference perturbations its latent likelihood is estimated with
        (evaluation/likelihood.py), name -> "module:function" of (noise [N, d], log_var [N, d]
        or None) -> delta [N, d], its training step's own first; {} when it defines none. The
        name keys the report ("<name>_direction").
      decoder_scale: the decoder learns an output scale log gamma_x (models.Decoder
        learned_scale).
      parts: "module:function" building the method's extra checkpointed modules, (cfg) ->
        {name: tf.Module}; each is saved in the run's checkpoint under its name. None: none.
      later_phases: "module:function" giving the phases trained after the image nets' own,
        (trainer, main_steps) -> [training Phase]; None: one phase.
      later_steps: (cfg, main_steps) -> steps of those later phases (TensorFlow-free: train.py
        and pga_tf.tools.results count a run's steps before TensorFlow loads).
      resume_keys: Config fields a resumed run of this method must also share (they shape its
        extra parts).
      order: position in tables and listings (lower first).
    """

    name: str
    label: str
    paper: str
    losses: str
    defaults: Mapping[str, Any]
    family: str = ""
    variational: bool = False
    perceptual: bool = False
    claim: str = ""
    fused_losses: str | None = None
    sampler: str = "prior"
    paper_sampler: str = ""
    samplers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    log_det_term: str | None = None
    forward_mode_log_det: bool = False
    likelihood: Mapping[str, str] = dataclasses.field(default_factory=dict)
    decoder_scale: bool = False
    parts: str | None = None
    later_phases: str | None = None
    later_steps: Callable[[Any, int], int] | None = None
    resume_keys: tuple[str, ...] = ()
    order: int = 100

    def resolve(self, field: str) -> Callable:
        """The object a "module:attribute" field names, imported now (TensorFlow with it)."""
        path = getattr(self, field)
        if not path:
            raise ValueError(f"method {self.name!r} has no {field}")
        return resolve(path)

    def build_parts(self, cfg) -> dict:
        """The method's extra checkpointed modules for `cfg` ({} for most methods)."""
        return dict(self.resolve("parts")(cfg)) if self.parts else {}

    def steps_after(self, cfg, main_steps: int) -> int:
        """Steps of the later phases after `main_steps` steps of the image nets (0: one phase)."""
        return int(self.later_steps(cfg, main_steps)) if self.later_steps else 0


def resolve(path: str) -> Any:
    """The attribute a "package.module:attribute" path names."""
    module, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"{path!r} is not of the form 'package.module:attribute'")
    return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, Method] = {}
_loaded = False


def register(method: Method, replace: bool = False) -> Method:
    """Add `method` to the registry (ValueError if its name is taken, unless `replace`)."""
    _load()
    if method.name in _REGISTRY and not replace and _REGISTRY[method.name] != method:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method registered at run time (tests)."""
    _load()
    _REGISTRY.pop(name, None)


def _add(obj: Any, origin: str) -> None:
    records = obj if isinstance(obj, (list, tuple)) else [obj]
    for m in records:
        if not isinstance(m, Method):
            raise TypeError(f"{origin} gives {type(m).__name__}, not a pga_tf.methods.Method")
        if m.name in _REGISTRY and _REGISTRY[m.name] != m:
            raise ValueError(f"{origin}: a method named {m.name!r} is already registered")
        _REGISTRY[m.name] = m


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from pga_tf.methods import cards

    for info in sorted(pkgutil.iter_modules(cards.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{cards.__name__}.{info.name}")
        _add(getattr(module, "METHODS", ()), f"pga_tf.methods.cards.{info.name}")
    from importlib.metadata import entry_points

    for point in entry_points(group=GROUP):
        _add(point.load(), f"entry point {point.name} ({point.value})")


def get(name: str) -> Method:
    """The record of method `name`; ValueError (one line, listing the names) if there is none."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(names())}") from None


def all_methods() -> tuple[Method, ...]:
    """Every registered method, in table order."""
    _load()
    return tuple(sorted(_REGISTRY.values(), key=lambda m: (m.order, m.name)))


def names() -> tuple[str, ...]:
    """Every method's name, in table order."""
    return tuple(m.name for m in all_methods())


def label(name: str) -> str:
    """A method's name in tables ("LPGA"); the name itself for a method not registered."""
    _load()
    return _REGISTRY[name].label if name in _REGISTRY else name


def method_samplers() -> dict[str, str]:
    """Sampler name -> "module:builder" for the samplers methods add (e.g. "two_stage")."""
    out: dict[str, str] = {}
    for m in all_methods():
        out.update(m.samplers)
    return out
