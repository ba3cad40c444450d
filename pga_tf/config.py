"""The run configuration: one frozen object, built from flags in the entry points only.

Library modules take a `Config` (or plain arguments), never absl's FLAGS, so each can be used and
tested without absl.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import typing
from collections.abc import Callable
from typing import Any

from pga_tf import jsonfile, methods

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


def real_data(cfg: Config, real_split: str, data_dir: str | None = None) -> tuple[str, str | None]:
    """(data split, data dir) of the real images an evaluation of `cfg`'s run scores against:
    the test split, or for real_split "validation" the images its --holdout kept out; `data_dir`,
    else the run's own. ValueError (one line) for an unknown real_split, or "validation" of a run
    that held nothing out."""
    if real_split not in REAL_SPLITS:
        raise ValueError(f"real_split must be one of {', '.join(REAL_SPLITS)}, got {real_split!r}")
    split = "test" if real_split == "test" else cfg.validation_split
    if split is None:
        raise ValueError(
            "--real_split=validation needs a run trained with --holdout=N; this run held nothing "
            "out (it trained on every training image)"
        )
    return split, data_dir or cfg.data_dir or None


def eval_report_path(run_dir: str, sampler: str = "prior", step: int | None = None, real_split: str = "test") -> str:
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


DATASETS = ("fashion_mnist", "mnist", "cifar10", "celeb_a")
# Each net's input (height, width): pga_tf/nets/models.py builds them for it, and a run whose
# --dataset has other images is refused before TensorFlow loads (training/preflight.py).
MODEL_IMAGE_SIZES = {"conv_mnist": (28, 28), "conv_32": (32, 32), "resnet_32": (32, 32), "conv_64": (64, 64)}
MODELS = tuple(MODEL_IMAGE_SIZES)

# LPGA's log-det estimator when --log_det is not given. Under a 16-bit policy the finite
# difference of two passes loses most of its digits (docs/BENCHMARKS.md measures it); forward
# mode has no difference to lose them in.
DEFAULT_LOG_DET = {"float32": "finite_difference", "mixed_float16": "jvp", "mixed_bfloat16": "jvp"}


@dataclasses.dataclass(frozen=True)
class Rule:
    """The numbers a setting may take: those `holds` accepts, described by `phrase`."""

    phrase: str  # what follows --<name>: "must be positive"
    holds: Callable[[Any], bool]


# NaN fails both (its comparisons are all false), as it should.
POSITIVE = Rule("must be positive", lambda v: v > 0)
NON_NEGATIVE = Rule("must be >= 0", lambda v: v >= 0)


def _non_negative(zero_means: str) -> Rule:
    return Rule(f"must be >= 0 (0 means {zero_means})", NON_NEGATIVE.holds)


# The groups of train.py's --help, in the README's order; each Config field names its own.
MAIN = "Main"
COEFFICIENT_GROUP = "Coefficients (default: the method's)"
RUN_CONTROL = "Run control"
NUMERICS = "Numerics"
SCALING_OUT = "Scaling out"
SPEED = "Speed and reproducibility"
SECOND_STAGE = "Second stage (2-Stage VAE)"
GROUPS = (MAIN, COEFFICIENT_GROUP, RUN_CONTROL, NUMERICS, SCALING_OUT, SPEED, SECOND_STAGE)


def _setting(
    default: Any,
    help: str,
    rule: Rule | None = None,
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] = (),
    *,
    group: str,
):
    """A Config field with what its train.py flag says (`help`), the values it may take and the
    --help group it is listed in (one of GROUPS)."""
    return dataclasses.field(default=default, metadata={"help": help, "rule": rule, "choices": choices, "group": group})


def _method_optimisers() -> str:
    return ", ".join(f"{m.name} {m.defaults['optimizer']} {m.defaults['lr']:g}" for m in methods.all_methods())


# One field per train.py flag (pga_tf/cli.py defines the flags from these fields: name, type,
# default, help, range). Where a flag's default depends on --method, its help says so and the
# default here is LPGA's, which for_method replaces with the method's own.
@dataclasses.dataclass(frozen=True)
class Config:
    method: str = _setting(methods.DEFAULT, "Training objective.", choices=method_names, group=MAIN)
    dataset: str = _setting(
        "fashion_mnist", "Dataset (TFDS name, or with --data_dir local files).", choices=DATASETS, group=MAIN
    )
    model: str = _setting(
        "conv_mnist", "Encoder/decoder architecture (reference src/models.py).", choices=MODELS, group=MAIN
    )
    z_dim: int = _setting(12, "Latent dimension (default: the method's reference default).", POSITIVE, group=MAIN)
    batch_size: int = _setting(64, "Global batch size (split over replicas).", POSITIVE, group=MAIN)
    lr: float = _setting(0.1, f"Learning rate (default: the method's; {_method_optimisers()}).", POSITIVE, group=MAIN)
    optimizer: str = _setting(
        "sgd",
        "sgd (momentum 0.9, reference) or adam (default: the method's, see --lr).",
        choices=OPTIMIZERS,
        group=MAIN,
    )
    epochs: int = _setting(600, "Training epochs (ignored when --train_steps > 0).", POSITIVE, group=MAIN)
    train_steps: int = _setting(
        0, "Total training steps; overrides --epochs when > 0.", _non_negative("use --epochs"), group=MAIN
    )
    use_bn: bool = _setting(False, "Batch norm in the nets (reference --bn).", group=MAIN)
    init_steps: int = _setting(
        3000, "Steps before the latent terms switch on (method default).", NON_NEGATIVE, group=MAIN
    )
    zn_rec: float = _setting(
        6e-2, "Latent reconstruction coefficient, z ~ N(0, I).", NON_NEGATIVE, group=COEFFICIENT_GROUP
    )
    zh_rec: float = _setting(0.0, "Latent reconstruction coefficient, z = E(x).", NON_NEGATIVE, group=COEFFICIENT_GROUP)
    nll: float = _setting(1.5e-2, "NLL coefficient (LPGA, LVPGA).", NON_NEGATIVE, group=COEFFICIENT_GROUP)
    vrec: float = _setting(
        0.0, "VAE latent reconstruction coefficient (VPGA, LVPGA).", NON_NEGATIVE, group=COEFFICIENT_GROUP
    )
    vkld: float = _setting(0.0, "VAE KL coefficient (VPGA, LVPGA, VAE).", NON_NEGATIVE, group=COEFFICIENT_GROUP)
    # methods/baseline_objectives.imq_mmd is WAE-MMD's term.
    wae_lambda: float = _setting(
        0.0,
        "WAE-MMD: weight of the IMQ-kernel MMD between the codes and "
        "prior samples (method default; per-pixel-mean MSE scale).",
        NON_NEGATIVE,
        group=COEFFICIENT_GROUP,
    )
    rae_beta: float = _setting(
        0.0, "RAE: weight of ||z||^2 / 2 (method default).", NON_NEGATIVE, group=COEFFICIENT_GROUP
    )
    rae_lambda: float = _setting(
        0.0, "RAE: weight of the decoder regulariser --rae_reg (method default).", NON_NEGATIVE, group=COEFFICIENT_GROUP
    )
    rae_reg: str = _setting(
        "l2",
        "RAE's decoder regulariser: 'l2' (weight decay on the decoder's "
        "kernels, RAE-L2) or 'gp' (squared gradient of the decoder w.r.t. z, "
        "RAE-GP).",
        choices=RAE_REGULARISERS,
        group=COEFFICIENT_GROUP,
    )
    seed: int = _setting(0, "Random seed (initialisation, noise, shuffling).", group=RUN_CONTROL)
    # holdout_splits turns it into TFDS split names.
    holdout: int = _setting(
        0,
        "Hold out the last N training images (never trained on) as a "
        "validation split, for choosing hyperparameters without the test split: "
        "evaluate.py --real_split=validation scores against them.",
        NON_NEGATIVE,
        group=RUN_CONTROL,
    )
    run_dir: str = _setting(
        "runs/default",
        "Output dir: checkpoints, TensorBoard logs, samples, "
        "export (default runs/<method>_<dataset>_<model>). An existing run resumes.",
        group=RUN_CONTROL,
    )
    data_dir: str = _setting(
        "", "A local directory of MNIST-format IDX files or image files, used instead of TFDS.", group=RUN_CONTROL
    )
    log_every: int = _setting(100, "Steps between progress lines and scalar summaries.", POSITIVE, group=RUN_CONTROL)
    sample_every: int = _setting(2000, "Steps between sample grids.", POSITIVE, group=RUN_CONTROL)
    ckpt_every: int = _setting(1000, "Steps between checkpoints.", POSITIVE, group=RUN_CONTROL)
    keep_checkpoints: int = _setting(3, "Checkpoints kept.", POSITIVE, group=RUN_CONTROL)
    steps_per_loop: int = _setting(10, "Steps run inside one tf.function call.", POSITIVE, group=SPEED)
    bn_momentum: float = _setting(0.99, "Momentum of the BN moving statistics.", group=MAIN)
    strategy: str = _setting("default", "tf.distribute strategy.", choices=STRATEGIES, group=SCALING_OUT)
    sync_bn: bool = _setting(False, "Synchronise BN statistics across replicas.", group=SCALING_OUT)
    precision: str = _setting(
        "float32",
        "Keras dtype policy of the nets (default float32). Losses, "
        "log-dets and BN statistics stay float32; only mixed_float16 scales the "
        "loss.",
        choices=PRECISIONS,
        group=NUMERICS,
    )
    jit_compile: bool = _setting(False, "XLA-compile the training step.", group=SCALING_OUT)
    fused: bool = _setting(
        True,
        "The fused training step: same losses and gradients as the plain "
        "one, fewer passes (methods/pga.py fused_method_losses). Only without --use_bn (with it, the "
        "plain step runs).",
        group=SPEED,
    )
    deterministic: bool = _setting(
        False,
        "Deterministic ops (tf.config.experimental."
        "enable_op_determinism): a resumed run ends bitwise where an "
        "uninterrupted one does.",
        group=SPEED,
    )
    log_det: str = _setting(
        "finite_difference",
        "LPGA's directional derivative J_h(z) u: the "
        "reference's finite difference, or exact forward-mode autodiff (jvp). "
        f"Default: {DEFAULT_LOG_DET['float32']} in float32, "
        f"{DEFAULT_LOG_DET['mixed_bfloat16']} under a mixed precision.",
        choices=LOG_DETS,
        group=NUMERICS,
    )
    # 2-Stage VAE only, after daib13/TwoStageVAE (demo.py, network/two_stage_vae_model.py).
    stage2_steps: int = _setting(
        0,
        "2-Stage VAE: steps of the second stage, trained after the first "
        "stage's; 0: --stage2_ratio times the first stage's.",
        _non_negative("use --stage2_ratio"),
        group=SECOND_STAGE,
    )
    stage2_ratio: float = _setting(
        2.0,
        "2-Stage VAE: second-stage steps per first-stage step when "
        "--stage2_steps is 0 (official epochs2 / epochs = 800 / 400).",
        POSITIVE,
        group=SECOND_STAGE,
    )
    stage2_lr: float = _setting(
        1e-4, "2-Stage VAE: Adam learning rate of the second stage (official --lr2).", POSITIVE, group=SECOND_STAGE
    )
    stage2_depth: int = _setting(
        3,
        "2-Stage VAE: hidden layers of each second-stage net (official --second-depth).",
        POSITIVE,
        group=SECOND_STAGE,
    )
    stage2_width: int = _setting(
        1024, "2-Stage VAE: width of those layers (official --second-dim).", POSITIVE, group=SECOND_STAGE
    )

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

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def holdout_splits(holdout: int) -> tuple[str, str | None]:
    """(training split, validation split) when the last `holdout` training images are held out,
    in TFDS's slicing syntax, which pga_tf.data reads: ("train[:-10000]", "train[-10000:]") for
    10000; ("train", None) for 0."""
    if holdout < 0:
        raise ValueError(f"--holdout must be >= 0, got {holdout}")
    return ("train", None) if holdout == 0 else (f"train[:-{holdout}]", f"train[-{holdout}:]")


def resolve_log_det(method: str, precision: str, log_det: str | None) -> str:
    """`log_det`, or its default for this method and precision (DEFAULT_LOG_DET for a method
    whose log-det term has a forward-mode form, else the finite difference)."""
    if log_det is not None:
        return log_det
    return DEFAULT_LOG_DET[precision] if methods.get(method).forward_mode_log_det else "finite_difference"


def resolve(method: str = methods.DEFAULT, **given: Any) -> Config:
    """The validated Config of a run of `method` with the `given` settings (Config field names;
    None or absent: the default): what train.py's flags and `pga_tf.train` both ask for.

    Defaults: the method's record's (z_dim, coefficients, optimiser, lr, ...), then the Config's;
    precision float32; log_det by `resolve_log_det`; run_dir runs/<method>_<dataset>_<model>.
    Raises ValueError (one line) for an unknown method or setting, or a value validate refuses.
    """
    fields = {s.name for s in settings()}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ValueError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the settings are Config's fields ({', '.join(sorted(fields))})"
        )
    overrides = {name: value for name, value in given.items() if value is not None}
    base = for_method(method)
    precision = overrides.setdefault("precision", base.precision)
    overrides["log_det"] = resolve_log_det(method, precision, overrides.get("log_det"))
    dataset, model = overrides.get("dataset", base.dataset), overrides.get("model", base.model)
    overrides.setdefault("run_dir", os.path.join("runs", f"{method}_{dataset}_{model}"))
    cfg = for_method(method, **overrides)
    validate(cfg)
    return cfg


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
        raise ValueError(
            f"--{flag} {escaped} is not valid UTF-8 (the bytes shown escaped); "
            "TensorFlow writes only UTF-8 paths: give a UTF-8 name"
        ) from None


def output_path_problem(flag: str, path: str, directory: bool = False) -> str | None:
    """Why `path` cannot be written as --flag's output (a file, or with `directory` a directory,
    made with its missing parents), or None; checked before any work, so a long evaluation or
    benchmark never ends in an OSError at its last line.

    The problems: an empty path, a file path ending in a separator, an existing path of the
    other kind, a broken symbolic link, an ancestor that is a file, an existing file or the
    nearest existing ancestor without write permission."""
    if not path:
        return f"--{flag} is empty; give a {'directory' if directory else 'file'} path"
    if path.endswith(("/", os.sep)):
        if not directory:
            return f"--{flag}={path} ends in a separator; give a file path"
        path = path.rstrip("/" + os.sep) or os.sep
    if os.path.islink(path) and not os.path.exists(path):
        return f"--{flag}={path} is a broken symbolic link (to {os.readlink(path)})"
    if os.path.exists(path):
        if directory and not os.path.isdir(path):
            return f"--{flag}={path} is a file, not a directory"
        if not directory and os.path.isdir(path):
            return f"--{flag}={path} is a directory; give a file path"
        if not os.access(path, os.W_OK | (os.X_OK if directory else 0)):
            return f"--{flag}={path}: no write permission"
        return None
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"--{flag}={path}: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--{flag}={path}: no write permission in {parent}"
    return None


@dataclasses.dataclass(frozen=True)
class Setting:
    """One Config field as its flag sees it: name, type, default, help and the values it may take."""

    name: str
    type: type
    default: Any
    help: str
    rule: Rule | None
    # The names it may take, or a function giving them now: the methods are the registry's at the
    # time of asking, so a method registered after this module loaded (a notebook's) is valid.
    options: tuple[str, ...] | Callable[[], tuple[str, ...]]
    group: str  # its --help group (GROUPS)

    @property
    def choices(self) -> tuple[str, ...]:
        """The names this setting may take (() for a free or numeric one)."""
        return tuple(self.options()) if callable(self.options) else self.options

    @property
    def requirement(self) -> str | None:
        """ "--<name> must be ..." for a numeric setting with a rule or a float one (finite);
        None for the others."""
        finite = self.type is float
        if self.rule:
            return f"--{self.name} {self.rule.phrase}" + (" and finite" if finite else "")
        return f"--{self.name} must be finite" if finite else None

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this setting (one line), or None if it may take it."""
        if self.choices and value not in self.choices:
            return f"unknown {self.name} {value!r}; choose one of {', '.join(self.choices)}"
        if self.rule and (value is None or not self.rule.holds(value)):
            return f"{self.requirement}, got {value}"
        if isinstance(value, float) and not math.isfinite(value):
            # inf passes "positive" and NaN fails nothing; neither trains, and JSON holds neither.
            return f"{self.requirement}, got {value}"
        return None


@functools.cache
def settings() -> tuple[Setting, ...]:
    """Every Config field, in definition order: what cli.define_train_flags makes a flag of and
    what validate checks."""
    types = typing.get_type_hints(Config)
    return tuple(
        Setting(
            f.name,
            types[f.name],
            f.default,
            f.metadata["help"],
            f.metadata["rule"],
            f.metadata["choices"],
            f.metadata["group"],
        )
        for f in dataclasses.fields(Config)
    )


def validate(cfg: Config) -> None:
    """Raise ValueError with one line for a configuration no run can use: a path TensorFlow cannot
    write, a setting outside its rule or choices (the ones train.py's flags check at parse time),
    or settings that contradict each other."""
    check_path_encoding("run_dir", cfg.run_dir)
    for setting in settings():
        problem = setting.problem(getattr(cfg, setting.name))
        if problem:
            raise ValueError(problem)
    if cfg.log_det == "jvp" and not methods.get(cfg.method).forward_mode_log_det:
        # e.g. LVPGA's perturbation has the posterior's scale: a finite difference by design.
        able = [m.name for m in methods.all_methods() if m.forward_mode_log_det]
        raise ValueError(
            f"--log_det=jvp is for --method={' or '.join(able)} only (got {cfg.method}, "
            "whose log-det term stays a finite difference)"
        )


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
    return (
        f"warning: --init_steps={cfg.init_steps} outlasts the {steps} steps of {subject}: "
        f"{', '.join(terms)} would join the losses at step {cfg.init_steps + 1}, so "
        f"{subject} is a plain autoencoder, not {cfg.method}"
    )


CONFIG_FILE = "config.json"
FEATURE_KINDS = ("classifier", "inception")  # what --features selects (features.py builds them)


def save(cfg: Config, run_dir: str) -> None:
    """Write the resolved configuration beside the checkpoints (atomically)."""
    os.makedirs(run_dir, exist_ok=True)
    jsonfile.write(os.path.join(run_dir, CONFIG_FILE), dataclasses.asdict(cfg), indent=2, sort_keys=True)


class ConfigError(ValueError):
    """A run's config.json that cannot be used (not JSON, a key unknown, missing or of the wrong
    type, a value no run can use); the message is one line naming the file."""


# The keys every config.json has held since the first one; a key added later takes its default
# when an older run's file lacks it.
REQUIRED_KEYS = (
    "method",
    "dataset",
    "model",
    "z_dim",
    "batch_size",
    "lr",
    "optimizer",
    "epochs",
    "train_steps",
    "use_bn",
    "init_steps",
    "zn_rec",
    "zh_rec",
    "nll",
    "vrec",
    "vkld",
    "seed",
    "run_dir",
    "data_dir",
    "log_every",
    "sample_every",
    "ckpt_every",
    "keep_checkpoints",
    "steps_per_loop",
    "bn_momentum",
    "strategy",
    "sync_bn",
    "jit_compile",
)
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

    fix = "restore it (train.py writes it at the start of a run) or use another --run_dir"

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{path} {what}; {fix}")

    raw = jsonfile.read(path, fix, ConfigError)
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
        return (
            f"--precision (--mixed_precision): run has {saved.precision!r}, asked for "
            f"{new.precision!r} (float16's loss scale is part of the checkpoint)"
        )
    return f"--{key}: run has {getattr(saved, key)!r}, asked for {getattr(new, key)!r}"
