#!/usr/bin/env bash
# Installs what the test suite needs beyond a Rust toolchain, on a fresh Debian machine:
# corosync (its daemon and libcpg, for the process-group tests, which run it in private
# network namespaces) and cc (the C API's tests). Root installs with apt-get; anyone else is
# told what is missing, and those tests then say so when they run.
set -euo pipefail
missing=()
command -v corosync > /dev/null || missing+=(corosync)
command -v cc > /dev/null || missing+=(gcc)
command -v unshare > /dev/null || missing+=(util-linux)
command -v ip > /dev/null || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: not root, not installing: ${missing[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" > /tmp/baton-test-deps.log 2>&1 || {
    apt-get update -q >> /tmp/baton-test-deps.log 2>&1
    apt-get install -y -q "${missing[@]}" >> /tmp/baton-test-deps.log 2>&1
} || { echo "test-deps: apt-get install ${missing[*]} failed: see /tmp/baton-test-deps.log" >&2; exit 1; }
echo "test-deps: installed ${missing[*]}"
