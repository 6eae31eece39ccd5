#!/usr/bin/env bash
# Runs every paddock benchmark and prints the numbers the README quotes.
# Usage: bench/run.sh [name...]   (no name = all: agent store runtime engine sdk controller claims router
#        sdk-upstream egress safety)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p paddock-bench --bins -p paddock -q

names=("$@")
# True when benchmark $1 was asked for (or when none was named).
runs() { [ ${#names[@]} -eq 0 ] || [[ " ${names[*]} " == *" $1 "* ]]; }
bin_dir="${CARGO_TARGET_DIR:-target}/release"

if runs agent; then
    # The in-sandbox agent: the release static binary, over TCP and a unix socket.
    PADDOCK_AGENT_BIN="$(scripts/build-agent.sh)" "$bin_dir/agent"
fi

if runs store; then
    # The object store: durable (redb, fsync per commit) latency, throughput, claim path, watch.
    "$bin_dir/store"
fi

if runs runtime; then
    # The local runtime: gVisor and bwrap sandboxes (create → ready, exec, 100 idle). Needs root.
    PADDOCK_AGENT_BIN="$(scripts/build-agent.sh)" "$bin_dir/runtime"
fi

if runs engine; then
    # paddock serve end to end: create, run, exec through the gateway, warm claims, bursts,
    # refill and restart. Needs root (gVisor).
    PADDOCK_AGENT_BIN="$(scripts/build-agent.sh)" "$bin_dir/engine" "${ENGINE_BENCH_ARGS:-}"
fi

if runs sdk; then
    # The Python SDK against a throwaway `paddock serve`: commands.run("true") round trips.
    python3 -m venv target/pyenv
    target/pyenv/bin/pip install -q --disable-pip-version-check ./sdk/python
    home="$(mktemp -d)" port=$((20000 + RANDOM % 20000))
    "$bin_dir/paddock" serve --home "$home" --listen "127.0.0.1:$port" \
        --agent "$(scripts/build-agent.sh)" >"$home/serve.log" 2>&1 &
    serve_pid=$!
    trap 'kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null; rm -rf "$home"' EXIT
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    PADDOCK_URL="http://127.0.0.1:$port" PADDOCK_TOKEN="$(cat "$home/token")" \
        target/pyenv/bin/python bench/sdk_python.py
fi

if runs controller; then
    # The Kubernetes controller in process against an in-memory API server: reconcile
    # throughput with 10,000 Sandboxes cached, and RSS with 5,000 Sandboxes and Pods cached.
    "$bin_dir/controller"
fi

if runs claims; then
    # Warm claims on the Kubernetes controller against the in-process API server charging what
    # a real one does (2 ms serialized commits, 0.5 ms watch delivery), with a stand-in kubelet:
    # sequential claim → Ready and writes per claim by verb and resource; a burst of 50.
    "$bin_dir/claims" ${CLAIMS_BENCH_ARGS:-}
fi

if runs router; then
    # The gateway as upstream's sandbox-router: a small GET to a sandbox's port, direct and
    # through the gateway, with the watch-fed Sandbox cache and with --cache-enabled=false.
    "$bin_dir/router"
fi

if runs sdk-upstream; then
    # Upstream's Python SDK (k8s-agent-sandbox 1.0.8, from PyPI) against paddock's controller
    # on the stand-in cluster of kube_stack: warm create_sandbox, claim create → bound and Ready.
    python3 -m venv target/pyenv-upstream
    target/pyenv-upstream/bin/pip install -q --disable-pip-version-check "k8s-agent-sandbox==1.0.8"
    target/pyenv-upstream/bin/python bench/sdk_upstream.py "$bin_dir/kube_stack" 20
fi

if runs egress; then
    # The egress proxy against test hosts in a namespace it makes: HTTPS GET latency through the
    # proxy (tunnel, TLS interception) versus direct, a 256 MiB download, network set-up per
    # sandbox, proxy memory with 200 sandboxes. Needs root.
    PADDOCK_AGENT_BIN="$(scripts/build-agent.sh)" "$bin_dir/egress"
fi

if runs safety; then
    # The safety layer: a permission decision (two policies met) and an audit-log append.
    "$bin_dir/safety"
fi
