"""The run configuration: one frozen object, built from flags in the entry points only.

Library modules take a `Config` (or plain arguments), never absl's FLAGS, so each can be used and
tested without absl.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from pga_tf import methods

OPTIMIZERS = ("sgd", "adam")
STRATEGIES = ("default", "mirrored", "multi_worker")
RAE_REGULARISERS = ("l2", "gp")  # RAE's decoder regulariser: weight decay (RAE-L2) or gradient penalty (RAE-GP)
# Keras dtype policies: the nets compute in float16/bfloat16 under the mixed ones; variables,
# losses, log-dets and BN statistics stay float32.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# LPGA's directional derivative J_h(z) u: the reference's finite difference, or exact forward mode.
LOG_DETS = ("finite_difference", "jvp")
# The latent terms' coefficients: 0 for the first --init_steps steps (the warm-up), then their values.
COEFFICIENTS = ("zn_rec", "zh_rec", "nll", "vrec", "vkld")

# Latent samplers (pga_tf/samplers.py builds them; the names live here, TensorFlow-free, so flags
# can be checked before TensorFlow loads): those for every method, then those methods add
# (Method.samplers). A method's record names the sampler of its own generative model.
SAMPLERS = ("prior", "gmm", *methods.method_samplers())


def method_names() -> tuple[str, ...]:
    """Every --method value, in table order (the registry's, pga_tf/methods/)."""
    return methods.names()


def default_sampler(method: str) -> str:
    """The sampler of `method`'s own generative model (evaluate.py's and the export's default)."""
    return methods.get(method).sampler


def sampler_suffix(sampler: str) -> str:
    """What metric names, TensorBoard tags and file names carry for `sampler`: nothing for the
    prior (where reports always put it), "-<sampler>" otherwise (FID-<features>-gmm)."""
    return "" if sampler == "prior" else f"-{sampler}"


REAL_SPLITS = ("test", "validation")  # what evaluate.py scores against (--real_split)


def eval_report_path(run_dir: str, sampler: str = "prior", step: int | None = None,
                     real_split: str = "test") -> str:
    """Where evaluate.py writes a run's report by default: <run_dir>/eval/report[-<sampler>].json
    for the latest checkpoint, <run_dir>/eval/step-<step>/report[-<sampler>].json for an earlier
    one (evaluate.py --checkpoint_step), so neither overwrites the other; scored against the
    held-out validation images instead of the test split, under eval/[step-<step>/]validation/."""
    sub = (() if step is None else (f"step-{step}",)) + (() if real_split == "test" else (real_split,))
    return os.path.join(run_dir, "eval", *sub, f"report{sampler_suffix(sampler)}.json")


# Flags a resumed or exported run must share with the run that wrote the checkpoint: they
# change the variables or what the weights mean.
ARCHITECTURE_KEYS = ("method", "dataset", "model", "z_dim", "use_bn")
# Flags a resumed run must also share: the optimizer and float16 (Config.mixed_precision: its
# loss-scale optimizer; not bfloat16, which resumes float32 runs and back) change the optimizer's
# variables (slots, loss scale), and the seed decided the initial weights, the noise stream and
# the shuffle order of the whole run. (Input flags such as --data_dir and --batch_size may change:
# the input position then starts afresh; see loop.fit.)
# --holdout too: it decides which images the run may train on (and which it must never see).
RESUME_KEYS = ("optimizer", "mixed_precision", "seed", "holdout")
# ... and those a method's record adds (Method.resume_keys: the 2-Stage VAE's second-stage shape).


@dataclasses.dataclass(frozen=True)
class Config:
    method: str = methods.DEFAULT
    dataset: str = "fashion_mnist"
    model: str = "conv_mnist"
    z_dim: int = 12
    batch_size: int = 64
    lr: float = 0.1
    optimizer: str = "sgd"
    epochs: int = 600
    train_steps: int = 0
    use_bn: bool = False
    init_steps: int = 3000
    zn_rec: float = 6e-2
    zh_rec: float = 0.0
    nll: float = 1.5e-2
    vrec: float = 0.0
    vkld: float = 0.0
    # WAE-MMD's weight of the IMQ-kernel MMD (methods/baseline_objectives.imq_mmd); RAE's weights of ||z||^2 / 2
    # and of the decoder regulariser `rae_reg` ("l2" weight decay or "gp" gradient penalty).
    wae_lambda: float = 0.0
    rae_beta: float = 0.0
    rae_lambda: float = 0.0
    rae_reg: str = "l2"
    seed: int = 0
    # The last `holdout` training images are never trained on: a validation split for choosing
    # hyperparameters without the test split (holdout_splits; evaluate.py --real_split=validation).
    holdout: int = 0
    run_dir: str = "runs/default"
    data_dir: str = ""
    log_every: int = 100
    sample_every: int = 2000
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    steps_per_loop: int = 10
    bn_momentum: float = 0.99
    strategy: str = "default"
    sync_bn: bool = False
    precision: str = "float32"
    jit_compile: bool = False
    # The fused training step (methods/pga.py fused_method_losses) when batch norm is off; same losses and
    # gradients as the plain step, fewer passes. Ignored (plain step) with --use_bn.
    fused: bool = True
    deterministic: bool = False
    log_det: str = "finite_difference"
    # 2-Stage VAE only (daib13/TwoStageVAE demo.py and network/two_stage_vae_model.py). Stage 2
    # trains for stage2_steps steps after stage 1's, or, when that is 0, for stage2_ratio times
    # stage 1's steps (the official epochs2 / epochs = 800 / 400).
    stage2_steps: int = 0
    stage2_ratio: float = 2.0
    stage2_lr: float = 1e-4  # Adam, as the official --lr2
    stage2_depth: int = 3  # hidden layers of each stage-2 net (official --second-depth)
    stage2_width: int = 1024  # their width (official --second-dim)

    @property
    def variational(self) -> bool:
        return methods.get(self.method).variational

    @property
    def mixed_precision(self) -> bool:
        """float16 compute, hence a loss-scale optimizer (whose variables are in checkpoints).

        The name of the flag (and config.json key) that `precision` replaced; bfloat16 has
        float32's exponent range and needs no loss scaling.
        """
        return self.precision == "mixed_float16"

    @property
    def train_split(self) -> str:
        """The split the run trains on (and fits ex-post samplers on): holdout_splits."""
        return holdout_splits(self.holdout)[0]

    @property
    def validation_split(self) -> str | None:
        """The held-out split, or None when nothing is held out."""
        return holdout_splits(self.holdout)[1]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def holdout_splits(holdout: int) -> tuple[str, str | None]:
    """(training split, validation split) when the last `holdout` training images are held out,
    in TFDS's slicing syntax, which pga_tf.data reads: ("train[:-10000]", "train[-10000:]") for
    10000; ("train", None) for 0."""
    if holdout < 0:
        raise ValueError(f"--holdout must be >= 0, got {holdout}")
    return ("train", None) if holdout == 0 else (f"train[:-{holdout}]", f"train[-{holdout}:]")


def for_method(method: str, **overrides: Any) -> Config:
    """A Config with `method`'s reference defaults (its record's), then `overrides` on top;
    ValueError for a method that is not registered."""
    return Config(method=method, **{**methods.get(method).defaults, **overrides})


def check_path_encoding(flag: str, path: str) -> None:
    """ValueError for a path that is not valid UTF-8 (a Latin-1 byte, held by Python as a
    surrogate escape): TensorFlow's file writers (checkpoints, summaries, SavedModels) take UTF-8
    names only, so such a run dir or export dir is refused before it is created."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        escaped = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ValueError(f"--{flag} {escaped} is not valid UTF-8 (the bytes shown escaped); "
                         "TensorFlow writes only UTF-8 paths: give a UTF-8 name") from None


def validate(cfg: Config) -> None:
    """Raise ValueError with one line for a configuration no run can use."""
    check_path_encoding("run_dir", cfg.run_dir)
    method = methods.get(cfg.method)  # ValueError for an unknown one
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {cfg.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if cfg.log_det not in LOG_DETS:
        raise ValueError(f"unknown log_det {cfg.log_det!r}; choose one of {', '.join(LOG_DETS)}")
    if cfg.log_det == "jvp" and not method.forward_mode_log_det:
        # e.g. LVPGA's perturbation has the posterior's scale: a finite difference by design.
        able = [m.name for m in methods.all_methods() if m.forward_mode_log_det]
        raise ValueError(f"--log_det=jvp is for --method={' or '.join(able)} only (got {cfg.method}, "
                         "whose log-det term stays a finite difference)")
    for name in ("z_dim", "batch_size", "epochs", "log_every", "sample_every", "ckpt_every",
                 "keep_checkpoints", "steps_per_loop"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name} must be positive, got {getattr(cfg, name)}")
    if not cfg.lr > 0:
        raise ValueError(f"--lr must be positive, got {cfg.lr}")
    if cfg.train_steps < 0:
        raise ValueError(f"--train_steps must be >= 0 (0 means use --epochs), got {cfg.train_steps}")
    if cfg.rae_reg not in RAE_REGULARISERS:
        raise ValueError(f"unknown --rae_reg {cfg.rae_reg!r}; choose one of {', '.join(RAE_REGULARISERS)}")
    for name in ("zn_rec", "zh_rec", "nll", "vrec", "vkld", "init_steps", "wae_lambda", "rae_beta",
                 "rae_lambda", "stage2_steps", "holdout"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("stage2_ratio", "stage2_lr", "stage2_depth", "stage2_width"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"--{name} must be positive, got {getattr(cfg, name)}")


def later_steps(cfg: Config, main_steps: int) -> int:
    """Steps of the method's later training phases after `main_steps` steps of the image nets
    (Method.later_steps: the 2-Stage VAE's second stage); 0 for a method of one phase."""
    return methods.get(cfg.method).steps_after(cfg, main_steps)


def warm_up_unfinished(cfg: Config, steps: int, subject: str = "this run") -> str | None:
    """The warning for a run (or checkpoint, `subject`) of `steps` steps that ends inside its
    warm-up, or None.

    Such a run trains (and exports) a plain autoencoder under the method's name. It is warned
    about, not refused: a few steps of a method at its default --init_steps is how a pipeline is
    smoke-tested, and a later resume with more --train_steps goes past the warm-up.
    """
    terms = [name for name in COEFFICIENTS if getattr(cfg, name)]
    if not terms or cfg.init_steps < steps:
        return None
    return (f"warning: --init_steps={cfg.init_steps} outlasts the {steps} steps of {subject}: "
            f"{', '.join(terms)} would join the losses at step {cfg.init_steps + 1}, so "
            f"{subject} is a plain autoencoder, not {cfg.method}")



CONFIG_FILE = "config.json"


def save(cfg: Config, run_dir: str) -> None:
    """Write the resolved configuration beside the checkpoints (atomically)."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(cfg.to_json() + "\n")
    os.replace(tmp, path)


class ConfigError(ValueError):
    """A run's config.json that cannot be used (not JSON, a key unknown, missing or of the wrong
    type, a value no run can use); the message is one line naming the file."""


# The keys every config.json has held since the first one; a key added later takes its default
# when an older run's file lacks it.
REQUIRED_KEYS = ("method", "dataset", "model", "z_dim", "batch_size", "lr", "optimizer", "epochs",
                 "train_steps", "use_bn", "init_steps", "zn_rec", "zh_rec", "nll", "vrec", "vkld",
                 "seed", "run_dir", "data_dir", "log_every", "sample_every", "ckpt_every",
                 "keep_checkpoints", "steps_per_loop", "bn_momentum", "strategy", "sync_bn",
                 "jit_compile")
_LEGACY_KEYS = {"mixed_precision": bool}  # written before --precision
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_error(key: str, value: Any, kind: type) -> str | None:
    """What is wrong with `value` as config.json's `key` of type `kind`, or None."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if ok:
        return None
    return f"key {key!r} is {json.dumps(value)}, not {_TYPE_NAMES[kind]}"


def load(run_dir: str) -> Config | None:
    """The configuration a run dir was trained with, or None if it has none.

    Raises ConfigError for a file that is empty, cut short or hand-edited into something no run
    wrote: the resume, the export and the evaluation would otherwise each read it differently
    (a traceback, a string compared with an integer, an unknown key silently dropped).
    """
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{path} {what}; restore it (train.py writes it at the start of a run) "
                           "or use another --run_dir")

    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise bad(f"cannot be read ({e.strerror})") from None
    if not text.strip():
        raise bad("is empty")
    try:
        raw = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad("is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise bad(f"is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}; cut short?)") from None
    if not isinstance(raw, dict):
        raise bad("does not hold a JSON object")
    fields = {f.name: type(getattr(Config(), f.name)) for f in dataclasses.fields(Config)}
    unknown = sorted(k for k in raw if k not in fields and k not in _LEGACY_KEYS)
    if unknown:
        raise bad(f"has unknown key(s) {', '.join(map(repr, unknown))}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise bad(f"lacks key(s) {', '.join(map(repr, missing))}")
    for key, value in raw.items():
        problem = _type_error(key, value, fields.get(key) or _LEGACY_KEYS[key])
        if problem:
            raise bad(problem)
    if "precision" not in raw:  # written before --precision: a bool mixed_precision
        raw["precision"] = "mixed_float16" if raw.get("mixed_precision") else "float32"
    cfg = Config(**{k: v for k, v in raw.items() if k in fields})
    try:
        validate(cfg)
    except ValueError as e:
        raise bad(f"holds a setting no run can use ({e})") from None
    return cfg


def conflicts(saved: Config, new: Config, keys: tuple[str, ...] = ARCHITECTURE_KEYS + RESUME_KEYS) -> list[str]:
    """The settings among `keys` (by default those a resumed run must share) on which `new`
    differs from the run's saved config, each as one phrase naming its flag. Two runs of one
    method must also share the keys its record adds (Method.resume_keys)."""
    if saved.method == new.method:
        keys = tuple(keys) + methods.get(saved.method).resume_keys
    return [_difference(saved, new, k) for k in keys if getattr(saved, k) != getattr(new, k)]


def _difference(saved: Config, new: Config, key: str) -> str:
    if key == "mixed_precision":
        # float16's loss-scale optimizer is in the checkpoint; float32 <-> bfloat16 resumes.
        return (f"--precision (--mixed_precision): run has {saved.precision!r}, asked for "
                f"{new.precision!r} (float16's loss scale is part of the checkpoint)")
    return f"--{key}: run has {getattr(saved, key)!r}, asked for {getattr(new, key)!r}"
