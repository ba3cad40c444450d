"""train.py's flags come from the Config fields: one flag per field (plus a few extras), and the
same accept/reject from the flags' parse-time checks as from config.validate."""

import math
import os
import subprocess
import sys

import pytest
from absl import flags

from pga_tf import cli, config

SETTINGS = {s.name: s for s in config.settings()}


@pytest.fixture(scope="module")
def train_flags():
    """train.py's flags in a FlagValues of their own (the tests' global FLAGS keep theirs)."""
    flag_values = flags.FlagValues()
    cli.define_train_flags(flag_values)
    return flag_values


def _flag_verdict(flag_values, name, value):
    """None if `--name=value` parses, else absl's message; None for `value` None (left unset)."""
    flag_values.unparse_flags()
    argv = ["train.py"] if value is None else ["train.py", f"--{name}={value}"]
    try:
        flag_values(argv)
    except flags.IllegalFlagValueError as e:
        return str(e)
    finally:
        flag_values.unparse_flags()
    return None


def _config_verdict(name, value):
    """None if a Config of `name`=`value` (None: not given) validates, else validate's message."""
    try:
        config.validate(config.for_method("lpga").replace(**({} if value is None else {name: value})))
    except ValueError as e:
        return str(e)
    return None


def test_every_config_field_is_a_train_flag_and_every_train_flag_a_field_or_an_extra(train_flags):
    names = {train_flags[name].name for name in train_flags}  # without short names
    assert names == set(SETTINGS) | set(cli.TRAIN_EXTRAS)
    assert not set(SETTINGS) & set(cli.TRAIN_EXTRAS)


@pytest.mark.parametrize("name", SETTINGS)
def test_a_flag_has_its_fields_type_default_help_and_choices(train_flags, name):
    setting, flag = SETTINGS[name], train_flags[name]
    kind = {int: "int", float: "float", bool: "bool", str: "string"}[setting.type]
    assert flag.parser.flag_type() == ("string enum" if setting.choices else kind)
    assert tuple(getattr(flag.parser, "enum_values", ())) == setting.choices
    assert flag.help.endswith(setting.help) and setting.help
    if name in cli.METHOD_DEPENDENT + cli.RESOLVED_FROM_OTHER_FLAGS:
        assert flag.default is None
    else:
        assert flag.default == setting.default


@pytest.mark.parametrize("method", config.method_names())
def test_flags_left_unset_give_the_methods_own_config(method):
    """A flag's fixed default never overrides what a method's record sets."""
    if "method" not in flags.FLAGS:
        cli.define_train_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", f"--method={method}"])
    try:
        cfg = cli.config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()
    assert cfg == config.for_method(method, run_dir=os.path.join("runs", f"{method}_fashion_mnist_conv_mnist"))


# (flag, value, accepted): None is the flag left unset (the method's default).
BOUNDARIES = [
    ("batch_size", 0, False),
    ("batch_size", 1, True),
    ("train_steps", -1, False),
    ("train_steps", 0, True),
    ("epochs", 0, False),
    ("epochs", 1, True),
    ("lr", 0, False),
    ("lr", 1e-3, True),
    ("lr", -0.5, False),
    ("lr", math.nan, False),
    ("z_dim", None, True),
    ("z_dim", 0, False),
    ("z_dim", 1, True),
    ("init_steps", -1, False),
    ("init_steps", 0, True),
    ("nll", -1e-9, False),
    ("nll", 0.0, True),
    ("zn_rec", None, True),
    ("holdout", -1, False),
    ("holdout", 0, True),
    ("keep_checkpoints", 0, False),
    ("steps_per_loop", 1, True),
    ("stage2_steps", -1, False),
    ("stage2_steps", 0, True),
    ("stage2_ratio", 0.0, False),
    ("stage2_ratio", 0.5, True),
    ("stage2_width", 0, False),
    ("stage2_width", 1, True),
    ("optimizer", "adam", True),
    ("optimizer", "adamw", False),
    ("rae_reg", "gp", True),
    ("rae_reg", "l1", False),
    ("method", "lvpga", True),
    ("method", "gan", False),
    ("dataset", "cifar10", True),
    ("dataset", "imagenet", False),
    ("model", "resnet_32", True),
    ("model", "resnet_50", False),
    ("precision", "mixed_bfloat16", True),
    ("precision", "float64", False),
    ("strategy", "mirrored", True),
    ("strategy", "tpu", False),
]


@pytest.mark.parametrize("name,value,accepted", BOUNDARIES)
def test_boundaries_are_the_same_from_the_flags_and_from_validate(train_flags, name, value, accepted):
    from_flags, from_config = _flag_verdict(train_flags, name, value), _config_verdict(name, value)
    assert (from_flags is None, from_config is None) == (accepted, accepted), (from_flags, from_config)
    requirement = SETTINGS[name].requirement
    if not accepted and requirement:  # a rule, said the same way by both
        assert from_flags.startswith(f"flag --{name}=") and from_flags.endswith(f": {requirement}")
        assert from_config == f"{requirement}, got {value}"


def _edges(setting):
    """Values on each side of the setting's rule, and its choices with one that is none of them."""
    if setting.choices:
        return [*setting.choices, "none_of_them"]
    if setting.rule:
        return [setting.type(v) for v in (-1, 0, 1)] + ([0.5, -0.5] if setting.type is float else [])
    return []


@pytest.mark.parametrize("name,value", [(s.name, v) for s in SETTINGS.values() for v in _edges(s)])
def test_every_rule_and_choice_gives_one_verdict(train_flags, name, value):
    assert (_flag_verdict(train_flags, name, value) is None) == (_config_verdict(name, value) is None)


def test_a_string_flag_still_refuses_a_flag_like_value(train_flags):
    assert "looks like a flag" in _flag_verdict(train_flags, "data_dir", "--seed=5")
    assert _flag_verdict(train_flags, "run_dir", "./-x") is None


@pytest.mark.e2e
def test_config_imports_neither_tensorflow_nor_absl():
    code = (
        "import sys, pga_tf.config; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'absl', 'keras'}))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
