//! The object store: the four kinds with Kubernetes semantics (resource versions, generations,
//! owner references, watches), in memory for tests and durable on an embedded database.
