#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe), which gives the webgpu
# backend (the optional packages `webgpu` and `@tensorflow/tfjs-backend-webgpu`)
# an adapter on a machine without a GPU. It emulates a GPU on the CPU: good for
# correctness (the webgpu gradient tests), far too slow for real work, and
# `--backend auto` never picks it.
#
# Dawn, the WebGPU engine behind `webgpu`, needs Mesa 24 or later (older
# lavapipe lacks a Vulkan feature Dawn requires). On Debian 12 (bookworm), whose
# own Mesa is 22.3, this adds the bookworm-backports suite on the mirror the
# system already uses and installs mesa-vulkan-drivers from there; elsewhere it
# installs mesa-vulkan-drivers from the system's own suites.
# Idempotent; needs root (apt-get); takes a minute. A machine with a real GPU
# needs its vendor's Vulkan driver instead.
#
#   sudo scripts/install-vulkan.sh
set -euo pipefail

min_major=24
say() { echo "install-vulkan: $*"; }

installed_major() {
  local v
  v="$(dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
  v="${v#*:}"
  echo "${v%%.*}"
}

have=$(installed_major)
if [ -n "$have" ] && [ "$have" -ge "$min_major" ] 2>/dev/null; then
  say "mesa-vulkan-drivers $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers) is already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "this script uses apt-get (Debian/Ubuntu). Elsewhere install Mesa's Vulkan drivers ($min_major or later) with your package manager." >&2
  exit 69
fi
if [ "$(id -u)" -ne 0 ]; then
  say "needs root (apt-get): run it as 'sudo scripts/install-vulkan.sh'" >&2
  exit 77
fi

codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
target=()
if [ "$codename" = bookworm ]; then
  if ! grep -qs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
    # The mirror of the bookworm suite already configured, in either source format.
    mirror="$(grep -rhs -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
    [ -n "$mirror" ] || mirror="$(grep -hs -E '^deb\s+\S+\s+bookworm\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | head -n1 || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    say "adding the bookworm-backports suite ($mirror) to /etc/apt/sources.list.d/bookworm-backports.list"
    echo "deb $mirror bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
  fi
  target=(-t bookworm-backports)
fi

say "installing mesa-vulkan-drivers ${target[*]}"
if ! apt-get update -qq || ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${target[@]}" mesa-vulkan-drivers libvulkan1; then
  say "apt-get failed; the webgpu backend stays unavailable (the webgpu tests skip)" >&2
  exit 69
fi

have=$(installed_major)
if [ -z "$have" ] || [ "$have" -lt "$min_major" ]; then
  say "installed mesa-vulkan-drivers $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers), but Dawn needs $min_major or later; this system offers no newer one" >&2
  exit 69
fi
say "mesa-vulkan-drivers $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers) installed: stages run with --backend webgpu now find a software adapter (auto never picks it)"
