#!/usr/bin/env bash
# Builds the static paddock-controller exactly as deploy/Dockerfile does, checks that it is
# static and starts inside an empty root (bubblewrap, when present), controller and gateway
# modes both, and prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# The explicit --target keeps RUSTFLAGS away from build scripts and proc macros.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" cargo build -q --release \
    --target "$target" -p paddock-kube --bin paddock-controller >&2
dir="${CARGO_TARGET_DIR:-target}"
bin="$(cd "$dir" && pwd)/$target/release/paddock-controller"

if ! file "$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "build-controller: $bin is not statically linked: $(file "$bin")" >&2
    exit 1
fi
if command -v bwrap >/dev/null 2>&1; then
    empty="$(mktemp -d)"
    trap 'rm -rf "$empty"' EXIT
    if ! bwrap --bind "$empty" / --ro-bind "$bin" /paddock-controller --unshare-all \
        /paddock-controller --version >/dev/null; then
        echo "build-controller: $bin does not start inside an empty root" >&2
        exit 1
    fi
    if ! bwrap --bind "$empty" / --ro-bind "$bin" /paddock-controller --unshare-all \
        /paddock-controller gateway --help >/dev/null; then
        echo "build-controller: $bin gateway does not start inside an empty root" >&2
        exit 1
    fi
fi
echo "$bin"
