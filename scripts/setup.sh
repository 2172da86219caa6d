#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent: installs only what is
# missing, so running it again on a set-up machine does nothing.
#
#   Debian: clang libclang-dev (librocksdb-sys's bindgen), kcat (wire conformance tests)
#   PyPI:   kafka-python 3.x, confluent-kafka (wire conformance tests, tests/wire/python/)
#   crates.io: cargo-nextest (pinned; the test runner ./scripts/test.sh and CI use)
#
# Works as root or, through sudo, as another user; meant for Debian 12.
set -euo pipefail

APT_PACKAGES=(clang libclang-dev kcat)
PIP_PACKAGES=('kafka-python>=3,<4' 'confluent-kafka')

if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
else
    SUDO=(sudo)
fi

apt_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

apt_updated=0
apt_install() {
    if [[ "$apt_updated" -eq 0 ]]; then
        echo "setup: apt-get update"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    echo "setup: apt-get install $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    apt_installed "$pkg" || missing+=("$pkg")
done
if [[ "${#missing[@]}" -gt 0 ]]; then
    apt_install "${missing[@]}"
fi

python_ok() {
    python3 - <<'PY' 2>/dev/null
import sys
import confluent_kafka  # noqa: F401
import kafka
sys.exit(0 if int(kafka.__version__.split(".")[0]) == 3 else 1)
PY
}

if ! python_ok; then
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3
    fi
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    pip_args=(--quiet)
    # Debian's own python3 refuses pip installs outside a venv (PEP 668); a pyenv or other
    # unmanaged python3 has no such marker.
    if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
        pip_args+=(--break-system-packages)
    fi
    echo "setup: pip install ${PIP_PACKAGES[*]}"
    if [[ "$(id -u)" -eq 0 ]]; then
        pip_args+=(--root-user-action=ignore)
    elif [[ ! -w "$(python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" ]]; then
        pip_args+=(--user)
    fi
    python3 -m pip install "${pip_args[@]}" "${PIP_PACKAGES[@]}"
    if ! python_ok; then
        echo "setup: python3 still cannot import kafka (3.x) and confluent_kafka after pip install" >&2
        exit 1
    fi
fi

NEXTEST_VERSION=0.9.143
if [[ "$(cargo nextest --version 2>/dev/null | awk 'NR==1 {print $2}')" != "$NEXTEST_VERSION" ]]; then
    echo "setup: cargo install cargo-nextest $NEXTEST_VERSION"
    cargo install cargo-nextest --version "$NEXTEST_VERSION" --locked --quiet
fi

echo "setup: ok (clang, libclang-dev, kcat, kafka-python 3, confluent-kafka, cargo-nextest $NEXTEST_VERSION)"
