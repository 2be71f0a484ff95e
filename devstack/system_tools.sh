#!/usr/bin/env bash
# The system tools the test suite drives for real, installed when missing (Debian packages):
# nginx (the gateway: tests/deploy, tests/compose), kubectl (`kubectl kustomize`: tests/deploy),
# Chromium and its driver (the storefront's browser tests) and Prometheus for promtool
# (`promtool check config/rules`: tests/observability). `make test` runs this first, for a
# person and for CI alike. With SYSTEM_TOOLS_DRY_RUN=1 it only says what it would install.
set -euo pipefail

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v promtool >/dev/null || missing+=(prometheus)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

fail() {
  echo "system-tools: the tests need these Debian packages: ${missing[*]}" >&2
  echo "system-tools: $1" >&2
  echo "system-tools: install them (e.g. sudo apt-get install ${missing[*]}) and run make test again" >&2
  exit 1
}

command -v apt-get >/dev/null || fail "there is no apt-get on this machine to install them"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  fail "installing them needs root, and sudo is not available"
fi
echo "system-tools: installing ${missing[*]}"
if [ "${SYSTEM_TOOLS_DRY_RUN:-0}" = 1 ]; then
  echo "system-tools: dry run: ${as_root[*]} apt-get install -y --no-install-recommends ${missing[*]}"
  exit 0
fi

# Installing nginx or prometheus must not start it as a system service: the tests run their
# own on free ports. A policy-rc.d answering 101 forbids service starts during the install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  "${as_root[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy"
  trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
  || fail "apt-get update failed"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" \
  || fail "apt-get install failed"
