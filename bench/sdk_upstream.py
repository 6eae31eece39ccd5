"""Upstream's Python SDK (k8s-agent-sandbox) against paddock's controller: warm
``SandboxClient.create_sandbox`` (claim create, then a watch until the claim is bound and Ready)
on the stand-in cluster of ``kube_stack`` (an API server modelled at 2 ms per commit).

Usage: python sdk_upstream.py KUBE_STACK_BINARY [RUNS]
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

from k8s_agent_sandbox import SandboxClient
from k8s_agent_sandbox.models import SandboxDirectConnectionConfig
from kubernetes import client as k8s
from kubernetes import config

POOL = 5
NAMESPACE = "sdk"


def pool_ready(api) -> int:
    pool = api.get_namespaced_custom_object(
        "extensions.agents.x-k8s.io", "v1beta1", NAMESPACE, "sandboxwarmpools", "python-pool"
    )
    return (pool.get("status") or {}).get("readyReplicas", 0)


def main() -> None:
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    stack = subprocess.Popen([binary, str(POOL)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(stack.stdout.readline())
        with tempfile.TemporaryDirectory() as home:
            kubeconfig = os.path.join(home, "kubeconfig")
            with open(kubeconfig, "w") as f:
                f.write(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: stack\n  cluster:\n"
                    f"    server: http://127.0.0.1:{port}\nusers:\n- name: me\n  user: {{}}\n"
                    "contexts:\n- name: stack\n  context:\n    cluster: stack\n    user: me\n"
                    "current-context: stack\n"
                )
            os.environ["KUBECONFIG"] = kubeconfig
            config.load_kube_config(config_file=kubeconfig)
            api = k8s.CustomObjectsApi()
            # Sandbox handles connect lazily; no command runs here, so no router is needed.
            sdk = SandboxClient(
                connection_config=SandboxDirectConnectionConfig(api_url="http://127.0.0.1:9"),
                api_client=config.new_client_from_config(config_file=kubeconfig),
            )
            times = []
            for i in range(runs + 2):
                deadline = time.time() + 10
                while pool_ready(api) < POOL:
                    assert time.time() < deadline, "the pool did not refill"
                    time.sleep(0.01)
                time.sleep(0.2)  # let the refill's writes settle
                t0 = time.perf_counter()
                sandbox = sdk.create_sandbox(warmpool="python-pool", namespace=NAMESPACE)
                elapsed = (time.perf_counter() - t0) * 1e3
                assert sandbox.sandbox_id != sandbox.claim_name, "a warm member was adopted"
                if i >= 2:  # the first two warm the client's connections
                    times.append(elapsed)
                sdk.delete_sandbox(sandbox.claim_name, namespace=NAMESPACE)
            times.sort()
            print(
                f"upstream Python SDK (k8s-agent-sandbox) warm create_sandbox on paddock's controller, "
                f"{runs} runs: median {statistics.median(times):.1f} ms, "
                f"p90 {times[int(len(times) * 0.9) - 1]:.1f} ms, min {times[0]:.1f} ms"
            )
    finally:
        stack.stdin.close()
        stack.wait(timeout=30)


if __name__ == "__main__":
    main()
