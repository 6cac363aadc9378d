#!/usr/bin/env bash
# The one install of tfx-qat, used by `make venv` (and so by CI) and by the Dockerfile:
#   scripts/install.sh system                      what installing needs: runtime + a C/C++ compiler
#   scripts/install.sh runtime                     what running needs (the image's final stage)
#   scripts/install.sh python PYTHON EXTRAS [-e]   tfx-qat[EXTRAS] with constraints.txt (uv)
#   scripts/install.sh trim VENV                   drops what no step uses (the image's venv)
# tflite-support's native modules link libusb-1.0 (Debian: libusb-1.0-0); pyfarmhash, a TFX
# dependency, is published as a source archive only and is compiled by pip (gcc and g++). Nothing
# else is needed beyond CPython 3.10 with its headers (TFX 1.16's wheels) and glibc >= 2.17.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt-get install of what is missing, as root; otherwise an error naming the package and why.
apt_install() {
  local why=$1; shift
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo ">> installing Debian packages $* ($why)"
    apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || {
      apt-get update -q >/dev/null &&
      apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
  else
    echo "ERROR: $why: install $* (Debian/Ubuntu: apt-get install $*), then re-run make" >&2
    exit 1
  fi
}

runtime() {
  ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' ||
    apt_install "tflite-support's native modules link libusb-1.0" libusb-1.0-0
}

system() {
  runtime
  if ! command -v gcc >/dev/null || ! command -v g++ >/dev/null; then
    apt_install "pip compiles pyfarmhash (a TFX dependency published as source only) with gcc/g++" \
      gcc g++ libc6-dev
  fi
}

# The image's venv: TensorFlow's C++ headers (420 MB) serve custom-op builds only.
trim() {
  rm -rf "$1"/lib/python3.10/site-packages/tensorflow/include
}

# uv (pinned, installed by pip into the venv) installs the pinned set: the same packages pip's
# resolver picks under constraints.txt, in ~30 s instead of ~130 s on 2 cores (pip spends it
# unpacking ~2 GB of wheels one at a time). TFX_QAT_INSTALLER=pip installs with pip instead (e.g.
# behind an index only pip.conf names: uv reads UV_INDEX_URL / UV_EXTRA_INDEX_URL, not pip.conf).
UV_VERSION=0.9.5
python_pkgs() {
  local py=$1 extras=$2 editable=${3:-} target
  if [ "$editable" = "-e" ]; then target=(-e ".[$extras]"); else target=(".[$extras]"); fi
  if [ "${TFX_QAT_INSTALLER:-uv}" = pip ]; then
    "$py" -m pip install -q --upgrade 'pip==26.3' 'setuptools==69.5.1' 'wheel==0.48.0'
    # --no-build-isolation: the pinned setuptools builds tfx-qat (no download of another one).
    if [ "$editable" = "-e" ]; then
      "$py" -m pip install -q --no-build-isolation -c constraints.txt "${target[@]}"
    else
      "$py" -m pip install -q --no-build-isolation --no-cache-dir -c constraints.txt "${target[@]}"
    fi
    return
  fi
  "$py" -m pip install -q "uv==$UV_VERSION"
  # --compile-bytecode: as pip does; without .pyc files the first import of TensorFlow and TFX
  # compiles them (Airflow's 30 s DagBag import timeout fails on it; each KFP step starts slower).
  # --native-tls: the system's CA store, as pip with a `cert =` in pip.conf (a TLS proxy's CA).
  local uv=("$py" -m uv pip install --python "$py" --quiet --compile-bytecode --native-tls)
  [ "$editable" = "-e" ] || uv+=(--no-cache)
  "${uv[@]}" 'pip==26.3' 'setuptools==69.5.1' 'wheel==0.48.0'
  # --no-build-isolation: the pinned setuptools builds tfx-qat and pyfarmhash.
  "${uv[@]}" --no-build-isolation -c constraints.txt "${target[@]}"
}

case "${1:-}" in
  system) system ;;
  runtime) runtime ;;
  python) shift; python_pkgs "$@" ;;
  trim) trim "$2" ;;
  *) echo "usage: $0 system | runtime | python PYTHON EXTRAS [-e] | trim VENV" >&2; exit 2 ;;
esac
