#!/usr/bin/env bash
# Install the Debian 12 packages moestream needs (only those missing). Uses sudo
# when not root. Safe to run repeatedly.
set -euo pipefail
DEPS="build-essential cmake pkg-config liburing-dev libopenblas-dev libnuma-dev libjson-c-dev \
libcmocka-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev curl python3-numpy"
missing=$(for p in $DEPS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
# Node and npm for test_serve_openai (the official OpenAI client): Debian's own
# packages unless a node with npm is already there (e.g. from NodeSource).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then missing="$missing nodejs npm"; fi
missing=$(echo $missing)
[ -z "$missing" ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "installing: $missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
