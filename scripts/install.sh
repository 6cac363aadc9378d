#!/usr/bin/env bash
# The one install of tfx-qat, used by `make venv` (and so by CI) and by the Dockerfile:
#   scripts/install.sh system                      Debian packages the pinned wheels need
#   scripts/install.sh python PYTHON EXTRAS [-e]   pip, then tfx-qat[EXTRAS] with constraints.txt
# tflite-support's native modules link libusb-1.0 (Debian: libusb-1.0-0); nothing else is needed
# beyond CPython 3.10 (TFX 1.16's wheels) and glibc >= 2.17 (the manylinux wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
DEBIAN_PACKAGES=(libusb-1.0-0)

system() {
  if ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then return 0; fi
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo ">> installing Debian packages ${DEBIAN_PACKAGES[*]} (tflite-support needs libusb-1.0)"
    apt-get install -y -q --no-install-recommends "${DEBIAN_PACKAGES[@]}" >/dev/null 2>&1 || {
      apt-get update -q >/dev/null &&
      apt-get install -y -q --no-install-recommends "${DEBIAN_PACKAGES[@]}" >/dev/null; }
  else
    echo "ERROR: libusb-1.0 is missing: install it (Debian/Ubuntu: apt-get install libusb-1.0-0)" >&2
    exit 1
  fi
}

python_pkgs() {
  local py=$1 extras=$2 editable=${3:-}
  "$py" -m pip install -q --upgrade 'pip==26.3' 'setuptools==69.5.1' 'wheel==0.48.0'
  # --no-build-isolation: the pinned setuptools builds tfx-qat (no download of another one).
  if [ "$editable" = "-e" ]; then
    "$py" -m pip install -q --no-build-isolation -c constraints.txt -e ".[$extras]"
  else
    "$py" -m pip install -q --no-build-isolation --no-cache-dir -c constraints.txt ".[$extras]"
  fi
}

case "${1:-}" in
  system) system ;;
  python) shift; python_pkgs "$@" ;;
  *) echo "usage: $0 system | python PYTHON EXTRAS [-e]" >&2; exit 2 ;;
esac
