#!/usr/bin/env bash
# Runs every paddock benchmark and prints the numbers the README quotes.
# Usage: bench/run.sh [name...]   (no name = all)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p paddock-bench --bins -q
