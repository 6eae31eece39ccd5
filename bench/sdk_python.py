"""Python SDK round trip: `sandbox.commands.run("true")` against a running `paddock serve`.

Prints p50/p90/p99 per runtime, plus `Sandbox.create` → usable for each. Reads PADDOCK_URL and
PADDOCK_TOKEN like the SDK does; bench/run.sh starts a throwaway serve and sets them.
Usage: python3 bench/sdk_python.py [--runs N] [--runtimes gvisor,bwrap]
"""

import argparse
import statistics
import time

from paddock import Sandbox


def percentiles(samples_ms):
    ordered = sorted(samples_ms)

    def at(q):
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return f"p50 {statistics.median(ordered):7.2f} ms  p90 {at(0.90):7.2f} ms  p99 {at(0.99):7.2f} ms"


def bench_runtime(runtime, runs):
    creates = []
    for _ in range(5):
        start = time.perf_counter()
        sbx = Sandbox.create(image="host", runtime=runtime)
        creates.append((time.perf_counter() - start) * 1000)
        sbx.kill()
    with Sandbox.create(image="host", runtime=runtime) as sbx:
        for _ in range(20):
            sbx.commands.run("true")
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            result = sbx.commands.run("true")
            samples.append((time.perf_counter() - start) * 1000)
            assert result.exit_code == 0, result
    print(f"sdk-python {runtime:7} Sandbox.create (5 runs)          {percentiles(creates)}")
    print(f"sdk-python {runtime:7} commands.run(\"true\") ({runs} runs) {percentiles(samples)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--runtimes", default="gvisor,bwrap")
    args = parser.parse_args()
    for runtime in args.runtimes.split(","):
        bench_runtime(runtime, args.runs)


if __name__ == "__main__":
    main()
