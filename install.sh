#!/usr/bin/env bash
# Installs everything pga-tf needs on a fresh Debian machine: the Fashion-MNIST files from
# Debian's dataset-fashion-mnist (for the default run, which has no network for TFDS) and a
# virtualenv at .venv with requirements.txt. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
