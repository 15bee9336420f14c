#!/usr/bin/env bash
# Ensures the system packages the project needs are installed.
# As root, installs the missing ones with apt-get; otherwise names the exact command to run.
set -euo pipefail
declare -A binary_of=([ffmpeg]=ffmpeg [espeak-ng]=espeak-ng [chromium]=chromium [nodejs]=node [npm]=npm
  [postgresql]=pg_ctlcluster)
missing=()
for pkg in "$@"; do
  bin=${binary_of[$pkg]:-$pkg}
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "Missing system packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
