#!/usr/bin/env bash
# System libraries that FFCV compiles against (OpenCV, libjpeg-turbo, pkg-config).
# Installs them with apt-get when run as root; otherwise names what to install.
set -euo pipefail

packages=(libopencv-dev libturbojpeg0-dev pkg-config)

have_all() {
    command -v pkg-config >/dev/null 2>&1 &&
        pkg-config --exists opencv4 &&
        pkg-config --exists libturbojpeg
}

if have_all; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing FFCV's system libraries: ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    have_all || { echo "error: ${packages[*]} installed, but pkg-config still cannot find opencv4/libturbojpeg" >&2; exit 1; }
else
    echo "error: FFCV needs system packages that are missing: ${packages[*]}" >&2
    echo "       install them as root, e.g.: sudo apt-get install ${packages[*]}" >&2
    exit 1
fi
