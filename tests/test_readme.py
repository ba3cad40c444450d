"""The README and docs/*.md against the program: quoted console lines come from a real run,
relative links point to files that exist, and the citation's version is the package's.

Quoted output is written in fenced blocks marked ```console: a line starting with `$ ` is the
command, every other line is output the program printed. Each quoted line must equal a line of
a real run's output once numbers (and hex digests) are replaced by a placeholder, so a figure
may differ from the run's but a word may not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, USER_ENV

PAGES = ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md")
)
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
RUN = "runs/lpga_fashion_mnist_conv_mnist"

_HEX = re.compile(r"\b[0-9a-f]{16,}\b")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def normalise(line: str) -> str:
    """`line` with every hex digest and number replaced, so only its words are compared."""
    return _NUMBER.sub("<n>", _HEX.sub("<hex>", line)).strip()


def quoted_lines(text: str) -> list[str]:
    """The output lines of the ```console blocks of a markdown page."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            inside = line.strip() == "```console"
            continue
        if inside and line.strip() and not line.strip().startswith("$ "):
            lines.append(line.strip())
    return lines


def misquoted(quotes: list[str], output: str) -> list[str]:
    """The quotes that match no line of `output` (numbers aside)."""
    printed = {normalise(line) for line in output.splitlines()}
    return [q for q in quotes if normalise(q) not in printed]


def _read(page: str) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------------------ quoted output
@pytest.fixture(scope="module")
def output(tmp_path_factory, idx_dir) -> str:
    """Everything the quoted commands print, run small, as the docs run them: from a directory
    whose runs/ is relative, trained on the real Fashion-MNIST files (evaluated on a tiny test
    split, which prints the same lines with other counts)."""
    if not os.path.isdir(FASHION_MNIST):
        pytest.skip(f"no {FASHION_MNIST} (install.sh installs it)")
    cwd = tmp_path_factory.mktemp("docs_run")
    py = [sys.executable]
    short = ["--log_every=5", "--steps_per_loop=5", "--sample_every=10", "--ckpt_every=10"]

    def start(*argv: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*py, *argv], cwd=cwd, env=USER_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def finish(*procs: subprocess.Popen) -> str:
        return "".join(p.communicate(timeout=1800)[0] for p in procs)  # a shared 2-core machine is slow

    # Two trainings at once: one past its warm-up, one that ends inside it.
    first = finish(
        start(f"{ROOT}/train.py", "--train_steps=10", "--init_steps=5", *short),
        start(f"{ROOT}/train.py", "--train_steps=10", "--run_dir=runs/short", "--noexport", *short),
    )
    gmm_dir = cwd / "pga_gmm"
    second = finish(
        start(
            f"{ROOT}/evaluate.py",
            f"--run_dir={RUN}",
            "--num_samples=100",
            "--draws=1",
            "--nll_examples=20",
            f"--classifier={ROOT}/classifiers/fashion_mnist_cnn.keras",
            f"--stats_cache={cwd / 'stats'}",
            f"--data_dir={idx_dir}",
        ),
        start(
            f"{ROOT}/export_savedmodel.py",
            f"--run_dir={RUN}",
            f"--export_dir={gmm_dir}",
            "--sampler=gmm",
            "--gmm_codes=500",
        ),
        start(f"{ROOT}/train.py", "--train_steps=10", "--optimizer=adam"),
        start(f"{ROOT}/train.py", "--lr=-1"),
    )
    # The docs export to /tmp/pga_gmm from a checkout at /home/me/pga-tf; this ran in a scratch dir.
    return (first + second).replace(str(gmm_dir), "/tmp/pga_gmm").replace(str(cwd), "/home/me/pga-tf")


@pytest.mark.e2e
@pytest.mark.parametrize("page", PAGES)
def test_quoted_console_lines_are_what_the_programs_print(page, output):
    assert misquoted(quoted_lines(_read(page)), output) == []


@pytest.mark.e2e
def test_the_check_rejects_a_misquote(output):
    # A misquote of the warm-up line: the program names only the terms that join (LPGA's zh_rec is 0).
    wrong = (
        "warm-up over: from step 1001 on (--init_steps=1000) zn_rec, zh_rec, nll join the losses, so the loss "
        "totals jump; the sample grids of the warm-up (dark blobs: only the autoencoder was trained) are expected"
    )
    right = wrong.replace("zn_rec, zh_rec, nll", "zn_rec, nll")
    assert misquoted([wrong, right], output) == [wrong]


def test_quotes_are_found_in_console_blocks_only():
    page = "```sh\nnot output\n```\n\n```console\n$ python train.py\nstep 5/10 | a 1\n\n```\ntext\n"
    assert quoted_lines(page) == ["step 5/10 | a 1"]
    assert normalise("step 5/10 | x -7.15 | ETA 0:00:07 digest 54e0620e0137ee05") == (
        "step <n>/<n> | x <n> | ETA <n>:<n>:<n> digest <hex>"
    )


# ------------------------------------------------------------------------ links
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a markdown page's headings."""
    titles = (line.lstrip("#").strip().lower() for line in text.splitlines() if line.startswith("#"))
    return {re.sub(r"[^\w\- ]", "", title).replace(" ", "-") for title in titles}


def broken_links(text: str, page_dir: str) -> list[str]:
    """The relative links of a markdown page (in `page_dir`) to no file, or to no heading."""
    broken = []
    text_outside_code = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code are not links
    for target in _LINK.findall(text_outside_code):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(page_dir, path)) if path else None
        if full is not None and not os.path.exists(full):
            broken.append(target)
        elif anchor and (full is None or full.endswith(".md")) and anchor not in anchors(_text_of(full, text)):
            broken.append(target)
    return broken


def _text_of(path: str | None, own: str) -> str:
    if path is None:  # a link to a heading of the page itself
        return own
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_points_to_an_existing_file(page):
    assert broken_links(_read(page), os.path.join(ROOT, os.path.dirname(page))) == []


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## The log-det estimator\n")
    page = (
        "# Top\n[ok](other.md) [ok](other.md#the-log-det-estimator) [ok](#top) [web](https://x.org/y)\n"
        "[gone](missing.md) [no heading](other.md#warm-up) ![img](pics/a.png) [self](#nowhere)\n"
        "```sh\n[in code](nothing.md)\n```\n"
    )
    assert broken_links(page, str(tmp_path)) == ["missing.md", "other.md#warm-up", "pics/a.png", "#nowhere"]


# ------------------------------------------------------------------------ citation
def test_the_software_citation_names_the_package_version():
    pyproject = _read("pyproject.toml")
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    entry = re.search(r"@software\{pga_tf,.*?\n\}", _read("README.md"), re.S)
    assert entry is not None
    assert re.search(r"version\s*=\s*\{([^}]*)\}", entry.group(0)).group(1) == version


def test_the_code_points_to_sections_that_exist():
    """Docstrings and comments say "docs/<page>.md, "<section>"" instead of explaining at length."""
    pointers = []
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "pga_tf")):
        for name in files:
            if name.endswith(".py"):
                text = _read(os.path.relpath(os.path.join(folder, name), ROOT))
                pointers += re.findall(r'(docs/\w+\.md), "([^"]+)"((?: and "[^"]+")*)', text)
    assert pointers, "no pointers found: the pattern no longer matches the code's"
    missing = []
    for page, first, more in pointers:
        headings = anchors(_read(page))
        for section in [" ".join(s.split()) for s in [first, *re.findall(r'"([^"]+)"', more)]]:
            if re.sub(r"[^\w\- ]", "", section.lower()).replace(" ", "-") not in headings:
                missing.append(f"{page}: {section}")
    assert missing == []
