#!/usr/bin/env bash
# System packages: the libraries that FFCV compiles against (OpenCV, libjpeg-turbo,
# pkg-config), required; and Chromium, with which the tests open the workflow's HTML
# report (tests/test_workflow.py; without it that test skips, and fails under CI=true).
# Installs them with apt-get when run as root; otherwise names what to install.
set -euo pipefail

packages=(libopencv-dev libturbojpeg0-dev pkg-config)
browser=chromium

have_ffcv_libraries() {
    command -v pkg-config >/dev/null 2>&1 &&
        pkg-config --exists opencv4 &&
        pkg-config --exists libturbojpeg
}

have_browser() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if have_ffcv_libraries && have_browser; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=()
    have_ffcv_libraries || missing+=("${packages[@]}")
    have_browser || missing+=("$browser")
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    have_ffcv_libraries || { echo "error: ${packages[*]} installed, but pkg-config still cannot find opencv4/libturbojpeg" >&2; exit 1; }
    have_browser || { echo "error: $browser installed, but no chromium command is on the PATH" >&2; exit 1; }
elif ! have_ffcv_libraries; then
    echo "error: FFCV needs system packages that are missing: ${packages[*]}" >&2
    echo "       install them as root, e.g.: sudo apt-get install ${packages[*]} $browser" >&2
    exit 1
else
    echo "note: $browser is missing, so the test that opens the HTML report will skip;" >&2
    echo "      install it as root, e.g.: sudo apt-get install $browser" >&2
fi
