"""absl flags, defined once for every entry point, and their translation into a Config.

Only the entry points (pga_tf/commands/, the tools run with `python -m`) import this module; the
library takes the resulting frozen Config.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import textwrap
import weakref
from collections.abc import Callable

from absl import app, flags

from pga_tf import config as config_lib
from pga_tf import methods

FLAGS = flags.FLAGS

DATASETS = config_lib.DATASETS
MODELS = config_lib.MODELS
DEFAULT_LOG_DET = config_lib.DEFAULT_LOG_DET

# Flags whose default depends on --method: every key a method's record sets (None here; resolved
# from its record's defaults). Taken from the registry, so a key a new method sets cannot be
# overridden by a flag's fixed default.
METHOD_DEPENDENT = tuple(
    s.name for s in config_lib.settings() if any(s.name in m.defaults for m in methods.all_methods())
)
# Flags whose default config_from_flags works out from other flags: --run_dir from the method,
# dataset and model, --precision from the --mixed_precision alias, --log_det from the precision.
RESOLVED_FROM_OTHER_FLAGS = ("run_dir", "precision", "log_det")
# train.py's flags that are not Config fields: how the process runs, not what it trains.
TRAIN_EXTRAS = ("cpu_devices", "worker_timeout", "mixed_precision", "export")

_DEFINE = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_boolean, str: flags.DEFINE_string}


def define_train_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """train.py's flags: one per Config field (config.settings: type, default, help, range), then
    TRAIN_EXTRAS.

    Raises absl's DuplicateFlagError when they are already defined in `flag_values`.
    """
    for setting in config_lib.settings():
        unset = setting.name in METHOD_DEPENDENT + RESOLVED_FROM_OTHER_FLAGS
        default = None if unset else setting.default
        if setting.choices:
            flags.DEFINE_enum(setting.name, default, setting.choices, setting.help, flag_values=flag_values)
        else:
            _DEFINE[setting.type](setting.name, default, setting.help, flag_values=flag_values)
        if setting.requirement:
            # None is a flag left unset: config_from_flags fills it in and validate checks it.
            flags.register_validator(
                setting.name,
                functools.partial(_within, setting, unset),
                message=setting.requirement,
                flag_values=flag_values,
            )
    flags.DEFINE_integer(
        "cpu_devices",
        0,
        "Split the CPU into this many logical devices (to run multi-replica code without GPUs); 0 leaves it alone.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "worker_timeout",
        600,
        "--strategy=multi_worker: seconds to wait for the other "
        "workers of TF_CONFIG to start before giving up; 0 waits forever.",
        flag_values=flag_values,
    )
    flags.DEFINE_boolean("mixed_precision", False, "Alias of --precision=mixed_float16.", flag_values=flag_values)
    flags.DEFINE_boolean(
        "export", True, "Write a SavedModel to <run_dir>/saved_model at the end.", flag_values=flag_values
    )
    for name in ("cpu_devices", "worker_timeout"):
        flags.register_validator(
            name,
            config_lib.NON_NEGATIVE.holds,
            flag_values=flag_values,
            message=f"--{name} {config_lib.NON_NEGATIVE.phrase}",
        )
    forbid_flag_like_values(flag_values)


def _within(setting: config_lib.Setting, may_be_unset: bool, value) -> bool:
    return (may_be_unset and value is None) or setting.problem(value) is None


_GUARDED: weakref.WeakSet = weakref.WeakSet()  # flags already checked (a flag hashes by identity)


def forbid_flag_like_values(flag_values: flags.FlagValues = FLAGS) -> None:
    """Refuse, at parse time, a path or name flag whose value starts with '-'.

    absl gives a string flag written without its value the next argument as its value: a
    flagfile ending in a bare `--run_dir`, followed by `--train_steps=5` on the command line,
    would train into a directory named `--train_steps=5`. Every string flag defined so far by
    this project (not absl's own) gets the check; entry points call this after defining their
    flags (each define_* function here does). A path that really starts with '-' can be written
    ./-name.
    """
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if module.startswith("absl"):
            continue
        for flag in module_flags:
            if flag.parser.flag_type() != "string" or flag in _GUARDED:
                continue
            _GUARDED.add(flag)
            flags.register_validator(flag.name, functools.partial(_not_flag_like, flag.name), flag_values=flag_values)


def _not_flag_like(name: str, value) -> bool:
    if isinstance(value, str) and value.startswith("-"):
        raise flags.ValidationError(
            f"--{name} got {value!r}, which looks like a flag: was the value of --{name} left "
            "out? (write a path that starts with '-' as ./-name)"
        )
    return True


def resolve_precision(precision: str | None, mixed_precision: bool) -> str:
    """--precision, with --mixed_precision as an alias of mixed_float16 (ValueError if they clash)."""
    if mixed_precision:
        if precision not in (None, "mixed_float16"):
            raise ValueError(f"--mixed_precision means --precision=mixed_float16, not {precision}; give one of them")
        return "mixed_float16"
    return precision or "float32"


def config_from_flags() -> config_lib.Config:
    """The Config these flags ask for: the method's defaults, then every flag given.

    Raises ValueError (one line) for flags that contradict each other (resolve_precision,
    config.validate).
    """
    # None: a flag left unset, the method's default or one resolved from the other settings.
    given = {s.name: FLAGS[s.name].value for s in config_lib.settings() if s.name != "method"}
    given["precision"] = resolve_precision(FLAGS.precision, FLAGS.mixed_precision)
    return config_lib.resolve(FLAGS.method, **given)


def split_cpu(n: int) -> None:
    """Expose the CPU as `n` logical devices; must run before TensorFlow initialises devices."""
    if n <= 0:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def quiet_tensorflow() -> None:
    """Keep the console for our progress lines: TF/absl INFO chatter (saver, SavedModel) off,
    unless PGA_TF_SHOW_TF_LOGS=1 asks for TensorFlow's logs (see pga_tf/console.py)."""
    import logging as py_logging

    from absl import logging

    from pga_tf import console

    if console.showing_tf_logs():
        return
    logging.set_verbosity(logging.WARNING)
    py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)


def fail(message: str) -> None:
    """End the program on a user error: one line on stderr, exit status 1."""
    line = " ".join(str(message).split())  # one line, whatever the message holds
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(
    main: Callable,
    user_errors: tuple | Callable[[], tuple],
    help_groups: tuple[tuple[str, tuple[str, ...]], ...] = (),
    doc: str | None = None,
    command: str | None = None,
) -> None:
    """absl's app.run for an entry point: user errors and flag errors end in one `error:` line
    (see guarded), and --help prints the program's own flags (grouped by `help_groups`) and exits 0.

    `doc` is the program's description for --help (default: the `__main__` module's docstring,
    which a console script's generated `__main__` does not have). `command` is how the docstring
    writes the program (`python train.py`); started as a console script, --help writes the
    script's name there instead (see program).
    """
    app.run(guarded(main, user_errors), flags_parser=lambda argv: parse_flags(argv, help_groups, doc, command))


# Every console script of pyproject.toml's [project.scripts] is named pga-<command>.
SCRIPT_PREFIX = "pga-"


def program(command: str) -> str:
    """The name the user started this program by: `command` (`python train.py`, `python -m
    pga_tf.tools.bench`), or the console script's (`pga-train`) when started as one."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return name if name.startswith(SCRIPT_PREFIX) else command


HELP_ARGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")
FULL_HELP_ARGS = ("--helpfull", "-helpfull")

FID_GROUP = "FID during training"
# The --help group of each train.py flag that is not a Config field (those name their own:
# config.Setting.group): the flags this module defines for train.py besides the Config's.
EXTRA_GROUPS = {
    "cpu_devices": config_lib.SCALING_OUT,
    "worker_timeout": config_lib.SCALING_OUT,
    "mixed_precision": config_lib.NUMERICS,
    "export": config_lib.RUN_CONTROL,
    "fid_every": FID_GROUP,
    "fid_samples": FID_GROUP,
    "features": FID_GROUP,
    "classifier": FID_GROUP,
    "inception_weights": FID_GROUP,
    "stats_cache": FID_GROUP,
}


def train_help_groups() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """train.py's --help groups, (title, flag names) in the README's order: each Config field
    in the group it names, then the other flags in theirs (EXTRA_GROUPS)."""
    group_of = {s.name: s.group for s in config_lib.settings()} | EXTRA_GROUPS
    titles = (*config_lib.GROUPS, FID_GROUP)
    return tuple((title, tuple(n for n, g in group_of.items() if g == title)) for title in titles)


def train_summary() -> str:
    """train.py's --help first line, naming every registered method (pga_tf/methods/)."""
    own = [m.label for m in methods.all_methods() if m.perceptual]
    baselines = [m.label for m in methods.all_methods() if not m.perceptual]
    return f"Train a PGA model ({', '.join(own)}) or a baseline on the same nets ({', '.join(baselines)})."


def parse_flags(
    argv: list[str], help_groups: tuple = (), doc: str | None = None, command: str | None = None
) -> list[str]:
    """absl's flag parsing, with our --help and a one-line `error:` for a bad flag."""
    args = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
    if any(a in HELP_ARGS or a in FULL_HELP_ARGS for a in args):
        print(help_text(help_groups, full=any(a in FULL_HELP_ARGS for a in args), doc=doc, command=command), end="")
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        message = str(e)
        if message.startswith("ERROR:: "):  # absl's prefix for an unreadable flagfile
            message = message[len("ERROR:: ") :]
        fail(f"{message} (--help lists the flags)")
    except UnicodeDecodeError:  # absl reads flagfiles as text and lets this through
        found = _undecodable_flagfile(args)
        if found:
            path, e = found
            fail(
                f"{path} is not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); "
                "a flagfile holds one --flag=value per line"
            )
        fail("a flagfile is not UTF-8 text; a flagfile holds one --flag=value per line")


def _undecodable_flagfile(args: list[str], seen: frozenset = frozenset()) -> tuple[str, UnicodeDecodeError] | None:
    """(the first flagfile, named on the command line or in a flagfile it names, whose bytes are
    not UTF-8, its decoding error) or None. Names as absl reads them: --flagfile=x, -flagfile=x
    or --flagfile x, with ~ expanded."""
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name not in ("--flagfile", "-flagfile"):
            continue
        path = value if eq else (args[i + 1] if i + 1 < len(args) else "")
        path = os.path.expanduser(path)
        if not path or path in seen:
            continue
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except UnicodeDecodeError as e:
            return path, e
        except OSError:
            continue
        inner = _undecodable_flagfile([line.strip() for line in text.splitlines()], seen | {path})
        if inner:
            return inner
    return None


def _own_flags() -> list:
    """The program's flags in definition order: all but absl's (and TensorFlow's, if loaded)."""
    foreign = ("absl", "tensorflow", "keras", "tf_keras")
    seen, out = set(), []
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module.split(".")[0] in foreign:
            continue
        for flag in module_flags:
            if flag.name not in seen:
                seen.add(flag.name)
                out.append(flag)
    return out


def _describe(flag) -> str:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    text = flag.help
    if flag.default is not None and flag.default != "":  # None: the help says what applies
        default = str(flag.default).lower() if flag.boolean else str(flag.default)
        text += f" (default: {default})"
    return f"  {name}\n" + textwrap.fill(text, width=96, initial_indent=" " * 6, subsequent_indent=" " * 6) + "\n"


def help_text(groups: tuple = (), full: bool = False, doc: str | None = None, command: str | None = None) -> str:
    """The program's docstring (`doc`, default `__main__`'s) and its flags, in `groups` then
    "Other flags" (or one list); `command` in the docstring is written as program(command)."""
    if doc is None:
        doc = getattr(sys.modules.get("__main__"), "__doc__", None)
    doc = (doc or "").strip()
    if command:
        doc = "\n".join(_renamed(line, command, program(command)) for line in doc.split("\n"))
    own = _own_flags()
    by_name = {f.name: f for f in own}
    sections, listed = [], set()
    for title, names in groups:
        present = [by_name[n] for n in names if n in by_name]
        if present:
            sections.append((title, present))
            listed.update(f.name for f in present)
    rest = [f for f in own if f.name not in listed]
    if rest:
        sections.append(("Other flags" if sections else "Flags", rest))
    out = [doc + "\n\n" if doc else ""]
    for title, section_flags in sections:
        out.append(f"{title}:\n" + "".join(_describe(f) for f in section_flags) + "\n")
    out.append(
        "--flagfile=FILE reads flags from FILE (one per line); later flags override it.\n"
        "PGA_TF_SHOW_TF_LOGS=1 shows TensorFlow's own log lines (hidden by default).\n"
    )
    if full:
        out.append(
            "\nabsl's flags:\n"
            + "".join(
                _describe(f)
                for module, fl in FLAGS.flags_by_module_dict().items()
                if module.split(".")[0] == "absl"
                for f in fl
            )
        )
    else:
        out.append("--helpfull adds absl's own flags.\n")
    return "".join(out)


def _renamed(line: str, command: str, name: str) -> str:
    """`line` with `command` written as `name`, its trailing `  # comment` kept in its column."""
    new = line.replace(command, name)
    shift = len(line) - len(new)
    comment = re.search(r" #", new)
    if shift > 0 and comment:
        new = new[: comment.start()] + " " * shift + new[comment.start() :]
    return new


def guarded(main: Callable, user_errors: tuple | Callable[[], tuple]) -> Callable:
    """Wrap an absl main so the given user-caused exceptions end in one line, not a traceback.

    `user_errors` may be a function returning the tuple, so the modules that define those
    exceptions (and TensorFlow with them) are imported only once an exception needs matching:
    a mistyped flag is then reported before TensorFlow has loaded.
    """

    def wrapped(argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            fail("interrupted")
        except Exception as e:
            errors = user_errors() if callable(user_errors) else user_errors
            if isinstance(e, errors):
                fail(str(e))
            raise

    return wrapped


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the tools that use it, with the project's one-line `error:` (argparse's own
    prints its usage, then exits 2)."""

    def error(self, message: str):
        fail(f"{message} (--help lists the flags)")


# ------------------------------------------------------------------------ evaluation flags
def define_feature_flags() -> None:
    """Which network's features FID/KID use (train.py's --fid_every and evaluate.py)."""
    flags.DEFINE_enum(
        "features",
        "classifier",
        config_lib.FEATURE_KINDS,
        "FID/KID features: 'classifier', the penultimate layer of a domain classifier "
        "trained by `python -m pga_tf.evaluation.classifier` (works offline), or 'inception', "
        "Inception-v3 pool features at 299x299.",
    )
    flags.DEFINE_string(
        "classifier",
        "",
        "Domain classifier file (.keras, with its .json beside it); default classifiers/<dataset>_cnn.keras.",
    )
    flags.DEFINE_string(
        "inception_weights",
        "imagenet",
        "Inception-v3 weights: 'imagenet' (downloads "
        "once; needs network), a local inception_v3_..._notop.h5 file, or 'random' "
        "(untrained: checks the plumbing only; reported as FID-Inception-random).",
    )
    flags.DEFINE_string(
        "stats_cache",
        os.path.join("~", ".cache", "pga_tf", "fid_stats"),
        "Directory caching real-data feature statistics, keyed by extractor "
        "checksum, dataset, split, N and a hash of the images.",
    )
    forbid_flag_like_values()


def define_fid_training_flags() -> None:
    """train.py's FID-during-training flags (with define_feature_flags)."""
    flags.DEFINE_integer(
        "fid_every", 0, "Steps between FID evaluations written to TensorBoard (eval/FID-<features>); 0 turns them off."
    )
    flags.DEFINE_integer("fid_samples", 2000, "Generated (and real test) images per training-time FID.")
    flags.register_validator("fid_every", lambda v: v >= 0, message="--fid_every must be >= 0")
    flags.register_validator("fid_samples", lambda v: v >= 2, message="--fid_samples must be >= 2")


def define_sampler_flags() -> None:
    """Which latent sampler generates (evaluate.py and export_savedmodel.py), and the GMM's fit."""
    flags.DEFINE_enum(
        "sampler",
        None,
        config_lib.SAMPLERS,
        "What z is drawn from: 'prior' (N(0, I)); 'gmm', a Gaussian mixture fitted on "
        "the codes E(x) of the training images (RAE's ex-post density estimation); "
        "'two_stage', the 2-stage VAE's second stage. Default: the method's own sampler "
        "(prior for every method but two_stage_vae).",
    )
    flags.DEFINE_integer("gmm_components", 10, "Mixture components of --sampler=gmm (full covariance).")
    flags.DEFINE_integer(
        "gmm_codes", 0, "--sampler=gmm fits on the codes of the first N training images; 0: all of them."
    )
    flags.DEFINE_integer("gmm_seed", 0, "Seed of the GMM fit's k-means initialisation.")
    flags.register_validator("gmm_components", lambda v: v > 0, message="--gmm_components must be positive")
    flags.register_validator("gmm_codes", lambda v: v >= 0, message="--gmm_codes must be >= 0 (0: all)")


def sampler_options():
    """samplers.Options from the --gmm_* flags (imports TensorFlow: call it once flags are checked)."""
    from pga_tf import samplers

    return samplers.Options(gmm_components=FLAGS.gmm_components, gmm_codes=FLAGS.gmm_codes, gmm_seed=FLAGS.gmm_seed)


def define_eval_flags() -> None:
    """evaluate.py's flags."""
    define_feature_flags()
    define_sampler_flags()
    flags.DEFINE_string("run_dir", None, "Training run to evaluate (its config.json and latest checkpoint).")
    flags.DEFINE_boolean(
        "baselines",
        False,
        "Instead of a run, score the reference rows of --dataset: "
        "real train images (the floor) and Gaussian noise images (a ceiling).",
    )
    flags.DEFINE_enum("dataset", "fashion_mnist", DATASETS, "Dataset of --baselines.")
    flags.DEFINE_string(
        "out",
        "",
        "Report path (default <run_dir>/eval/report.json, or baselines_<dataset>.json); PNG grids go beside it.",
    )
    flags.DEFINE_integer(
        "num_samples",
        10000,
        "Generated images per draw for FID/KID (real: as many test images, at most the whole test split).",
    )
    flags.DEFINE_integer(
        "draws",
        3,
        "Independent draws of --num_samples samples; FID/KID are reported as mean and standard deviation over them.",
    )
    flags.DEFINE_integer("nll_examples", 1000, "Test images for the exact latent NLL (LPGA/LVPGA); 0 skips it.")
    flags.DEFINE_integer(
        "fd_draws",
        16,
        "Random directions per image for the finite-difference log-det estimate reported beside the exact one.",
    )
    flags.DEFINE_integer("batch_size", 250, "Batch size for sampling, features and reconstructions.")
    flags.DEFINE_integer("seed", 0, "Seed of the latent samples and finite-difference directions.")
    flags.DEFINE_string("data_dir", None, "Data directory (default: the run's --data_dir).")
    flags.DEFINE_enum(
        "real_split",
        "test",
        config_lib.REAL_SPLITS,
        "What the samples are scored "
        "against (and the reconstructions and NLL measured on): the test split, or the "
        "validation images a run trained with --holdout=N held out (for choosing "
        "hyperparameters without the test split; report under eval/validation/).",
    )
    flags.DEFINE_integer(
        "checkpoint_step",
        0,
        "Evaluate the checkpoint saved at this step instead of "
        "the latest (report in <run_dir>/eval/step-<N>/); 0: the latest.",
    )
    flags.register_validator("checkpoint_step", lambda v: v >= 0, message="--checkpoint_step must be >= 0")
    flags.register_multi_flags_validator(
        ["run_dir", "baselines"],
        lambda v: bool(v["run_dir"]) != v["baselines"],
        message="give either --run_dir=<training run> or --baselines",
    )
    for name in ("num_samples", "batch_size", "fd_draws", "draws"):
        flags.register_validator(name, lambda v: v > 0, message=f"--{name} must be positive")
    flags.register_validator("num_samples", lambda v: v >= 2, message="--num_samples must be >= 2")
    flags.register_validator("nll_examples", lambda v: v >= 0, message="--nll_examples must be >= 0")
    forbid_flag_like_values()


def define_classifier_flags() -> None:
    """`python -m pga_tf.evaluation.classifier`'s flags."""
    flags.DEFINE_enum("dataset", "fashion_mnist", DATASETS, "Dataset (MNIST-format IDX files with labels).")
    flags.DEFINE_string("out", "classifiers", "Output directory for <name>.keras and <name>.json.")
    flags.DEFINE_string("name", "", "Classifier name (default <dataset>_cnn); reports say FID-<name>.")
    flags.DEFINE_string("data_dir", "", "Directory of IDX files (default: the dataset's local copy).")
    flags.DEFINE_integer("epochs", 8, "Training epochs.")
    flags.DEFINE_integer("batch_size", 128, "Batch size.")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_boolean("overwrite", False, "Replace a classifier of the same name in --out.")
    for name in ("epochs", "batch_size"):
        flags.register_validator(name, lambda v: v > 0, message=f"--{name} must be positive")
    forbid_flag_like_values()


def define_export_flags() -> None:
    """export_savedmodel.py's flags."""
    flags.DEFINE_string("run_dir", None, "Training run to export (its config.json and latest checkpoint).")
    flags.DEFINE_string("export_dir", None, "Where to write the SavedModel (default <run_dir>/saved_model).")
    flags.DEFINE_boolean("overwrite", False, "Replace an existing export at --export_dir.")
    flags.DEFINE_string("data_dir", None, "Training images --sampler=gmm fits on (default: the run's --data_dir).")
    define_sampler_flags()
    flags.mark_flag_as_required("run_dir")
    forbid_flag_like_values()
