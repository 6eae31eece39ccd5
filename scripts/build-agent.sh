#!/usr/bin/env bash
# Builds the self-contained paddock-agent: statically linked (glibc, no NSS/dlopen use),
# stripped, size-optimised. It is bind-mounted into arbitrary images and runs as their PID 1.
# Checks that the result is static and starts inside an empty root (bubblewrap, when present).
# Prints the path of the binary on stdout; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# The explicit --target keeps RUSTFLAGS away from build scripts and proc macros.
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --profile release-agent \
    --target "$target" -p paddock-agent --bin paddock-agent >&2
dir="${CARGO_TARGET_DIR:-target}"
bin="$(cd "$dir" && pwd)/$target/release-agent/paddock-agent"

if ! file "$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "build-agent: $bin is not statically linked: $(file "$bin")" >&2
    exit 1
fi
if command -v bwrap >/dev/null 2>&1; then
    empty="$(mktemp -d)"
    trap 'rm -rf "$empty"' EXIT
    if ! bwrap --bind "$empty" / --ro-bind "$bin" /paddock-agent --unshare-all /paddock-agent --version >/dev/null; then
        echo "build-agent: $bin does not start inside an empty root" >&2
        exit 1
    fi
fi
echo "$bin"
