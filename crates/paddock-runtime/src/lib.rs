//! The local runtime: turns a Sandbox's pod template into an isolated workload on this host
//! (gVisor by default, bubblewrap as the fast tier). It never runs code unsandboxed.
