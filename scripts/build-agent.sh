#!/usr/bin/env bash
# Builds the self-contained paddock-agent: statically linked (glibc, no NSS/dlopen use),
# stripped, size-optimised. It is bind-mounted into arbitrary images and runs as their PID 1.
# Prints the path of the binary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# The explicit --target keeps RUSTFLAGS away from build scripts and proc macros.
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --profile release-agent \
    --target "$target" -p paddock-agent --bin paddock-agent >&2
dir="${CARGO_TARGET_DIR:-target}"
echo "$(cd "$dir" && pwd)/$target/release-agent/paddock-agent"
