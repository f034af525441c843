#!/usr/bin/env bash
# Debian packages some tests need, installed only when missing (and only where apt-get can run):
#   openclipart-svg + librsvg2-bin  the Openclipart image-caption data (CLIP/LIFT) and its rasteriser
#   chromium                        headless browser for the Gradio Spaces tests (driven by Playwright)
# Tests that need a missing package skip with a reason, so a failure here is a warning, not an error.
set -uo pipefail
packages=()
{ [ -d /usr/share/openclipart/svg ] && command -v rsvg-convert >/dev/null; } || packages+=(openclipart-svg librsvg2-bin)
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ ${#packages[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null || [ "$(id -u)" -ne 0 ]; then
  echo "warning: cannot install ${packages[*]} (needs root and apt-get); the tests that use them will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq "${packages[@]}" >/dev/null; } \
  || echo "warning: could not install ${packages[*]}; the tests that use them will skip" >&2
exit 0
