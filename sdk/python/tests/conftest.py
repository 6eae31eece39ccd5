"""A real `paddock serve` for the SDK tests: started once per session on a free port with a
temporary home, its token and URL exported for the SDK, and every sandbox deleted at the end.

Needs the `paddock` binary (`PADDOCK_BIN`, default target/debug/paddock) and the static agent
(`PADDOCK_AGENT_BIN`), as scripts/test provides them.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server():
    binary = Path(os.environ.get("PADDOCK_BIN", REPO / "target" / "debug" / "paddock"))
    agent = os.environ.get("PADDOCK_AGENT_BIN")
    assert binary.exists(), f"{binary} not found: build it (cargo build -p paddock) or set PADDOCK_BIN"
    assert agent, "set PADDOCK_AGENT_BIN to the static agent (scripts/build-agent.sh prints it)"
    home = Path(tempfile.mkdtemp(prefix="paddock-py-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(home / "serve.log", "wb")
    # A v2 key pair, so the server mints scoped tokens (Sandbox.mint_token).
    subprocess.run(
        [str(binary), "token", "keygen", "--signing-key-file", str(home / "signing.json"),
         "--verification-keys-file", str(home / "keys.json")],
        check=True, capture_output=True,
    )
    proc = subprocess.Popen(
        [str(binary), "serve", "--home", str(home), "--listen", f"127.0.0.1:{port}", "--agent", agent,
         "--scoped-token-signing-key-file", str(home / "signing.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError(f"paddock serve did not start:\n{(home / 'serve.log').read_text()}")
    token = (home / "token").read_text().strip()
    os.environ["PADDOCK_URL"] = url
    os.environ["PADDOCK_TOKEN"] = token
    try:
        yield {"url": url, "token": token, "home": home}
    finally:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            # Pools first, or they refill what is deleted.
            pools = f"{url}/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools"
            for pool in httpx.get(pools, headers=headers, timeout=10).json().get("items", []):
                httpx.delete(f"{pools}/{pool['metadata']['name']}", headers=headers, timeout=10)
            for sb in httpx.get(f"{url}/v1/sandboxes", headers=headers, timeout=10).json().get("items", []):
                target = sb.get("claim") or sb["name"]
                httpx.delete(f"{url}/v1/sandboxes/{target}", headers=headers, params={"namespace": sb["namespace"]}, timeout=10)
            deadline = time.time() + 20
            while time.time() < deadline and httpx.get(f"{url}/v1/sandboxes", headers=headers, timeout=10).json().get("items"):
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def python_pool(server):
    """A SandboxTemplate `py` and a warm pool `py-pool` of 2 bwrap sandboxes."""
    manifest = """
apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxTemplate
metadata: {name: py}
spec:
  envVarsInjectionPolicy: Allowed
  podTemplate:
    spec:
      runtimeClassName: bwrap
      containers: [{name: main, image: host, command: [sleep, infinity]}]
---
apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxWarmPool
metadata: {name: py-pool}
spec:
  replicas: 2
  sandboxTemplateRef: {name: py}
"""
    headers = {"Authorization": f"Bearer {server['token']}", "Content-Type": "application/yaml"}
    r = httpx.post(f"{server['url']}/v1/apply", content=manifest, headers=headers, timeout=30)
    r.raise_for_status()
    pool = f"{server['url']}/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools/py-pool"
    deadline = time.time() + 60
    while time.time() < deadline:
        status = httpx.get(pool, headers=headers, timeout=10).json().get("status", {})
        if status.get("readyReplicas") == 2:
            return "py-pool"
        time.sleep(0.1)
    raise RuntimeError("the warm pool did not become ready")
