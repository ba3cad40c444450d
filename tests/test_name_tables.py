"""The names the flags accept against the tables that act on them: every --dataset is one
pga_tf/data.py can load, every --model one pga_tf/nets/models.py can build, every --sampler one
samplers.build can build, and no table holds a name the flags refuse. The flags' lists are
TensorFlow-free (config.py), the tables are not, so they are written twice; this keeps them one."""

import pytest
from absl import flags

from pga_tf import cli, config, data, methods, samplers
from pga_tf.nets import models


def mismatches() -> list[str]:
    """One line per name that one side has and the other lacks, read from the modules now."""
    pairs = {
        "dataset": (config.DATASETS, data.DATASETS),
        "model": (config.MODELS, models.ARCHS),
        "sampler": (config.SAMPLERS, (*samplers.BUILDERS, *methods.method_samplers())),
    }
    out = []
    for name, (accepted, table) in pairs.items():
        out += [f"--{name}={n} is accepted but not in the table" for n in accepted if n not in table]
        out += [f"--{name} refuses {n}, which the table has" for n in table if n not in accepted]
    shapes = set(models.IMAGE_SHAPES.values())
    out += [
        f"no --model takes {n}'s {d.image_shape[:2]} images"
        for n, d in data.DATASETS.items()
        if d.image_shape[:2] not in shapes
    ]
    return out


def test_flag_names_match_the_tables():
    assert mismatches() == []


def test_every_choice_field_is_a_flag_of_those_choices():
    """train.py's enum flags take exactly the Config fields' choices; the dataset and model fields
    and the other programs' --dataset take config's lists."""
    train = flags.FlagValues()
    cli.define_train_flags(train)
    choices = {s.name: s.choices for s in config.settings() if s.choices}
    assert {name: tuple(train[name].parser.enum_values) for name in choices} == choices
    assert choices["dataset"] == config.DATASETS and choices["model"] == config.MODELS
    assert cli.DATASETS is config.DATASETS and cli.MODELS is config.MODELS


@pytest.mark.parametrize(
    "module,table,extra",
    [
        (data, "DATASETS", data.DATASETS["mnist"]),
        (models, "ARCHS", models.ARCHS["conv_32"]),
        (config, "DATASETS", None),
        (config, "MODELS", None),
        (samplers, "BUILDERS", samplers.BUILDERS["prior"]),
    ],
)
def test_a_name_on_one_side_only_is_reported(monkeypatch, module, table, extra):
    old = getattr(module, table)
    grown = {**old, "new_name": extra} if isinstance(old, dict) else (*old, "new_name")
    monkeypatch.setattr(module, table, grown)
    assert any("new_name" in line for line in mismatches()), mismatches()
