//! The gateway: the one HTTP API for SDKs and the CLI, plus the upstream router contract.
