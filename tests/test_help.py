"""train.py --help: every flag under a named group (one source: the Config field's group, or
cli.EXTRA_GROUPS for the flags that are not Config fields), and a first line naming every method."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from pga_tf import cli, config, methods
from tests.helpers import ROOT


def _help() -> str:
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def sections(text: str) -> dict[str, list[str]]:
    """--help's groups: title -> the flag names listed under it, in order."""
    out: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        if re.fullmatch(r"\S.*:", line):
            title = line[:-1]
            out[title] = []
        elif title is not None and (m := re.fullmatch(r"  --(?:\[no\])?(\w+)", line)):
            out[title].append(m.group(1))
    return out


@pytest.fixture(scope="module")
def help_text() -> str:
    return _help()


@pytest.mark.e2e
def test_every_flag_is_in_a_named_group(help_text):
    found = sections(help_text)
    assert "Other flags" not in found and "Flags" not in found, found.keys()
    assert list(found) == [*config.GROUPS, cli.FID_GROUP]
    listed = [name for names in found.values() for name in names]
    assert len(listed) == len(set(listed))
    assert {s.name for s in config.settings()} | set(cli.EXTRA_GROUPS) == set(listed)


@pytest.mark.e2e
def test_numerics_holds_precision_its_alias_and_the_log_det(help_text):
    found = sections(help_text)
    assert found[config.NUMERICS] == ["precision", "log_det", "mixed_precision"]
    assert "mixed_precision" not in found[config.SCALING_OUT]


@pytest.mark.e2e
def test_first_line_names_every_registered_method(help_text):
    first = help_text.splitlines()[0]
    for method in methods.all_methods():
        assert re.search(rf"[(, ]{re.escape(method.label)}[,)]", first), (method.label, first)
    assert first == cli.train_summary()


def test_each_config_field_names_a_known_group():
    assert {s.group for s in config.settings()} <= set(config.GROUPS)
    assert set(cli.EXTRA_GROUPS.values()) <= {*config.GROUPS, cli.FID_GROUP}


def test_a_method_registered_later_is_in_the_first_line():
    toy = methods.Method(name="toy_help", label="Toy Help AE", paper="-", losses="x:y", defaults={})
    methods.register(toy)
    try:
        assert "Toy Help AE" in cli.train_summary()
    finally:
        methods.unregister("toy_help")
