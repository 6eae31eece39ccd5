//! The OpenAPI 3.1 description served at `/openapi.json` (the prose reference is
//! docs/gateway-api.md). The schemas are generated from the wire types of `paddock-wire`, the
//! same types the gateway parses and answers with.

use serde_json::{Value, json};

fn op(summary: &str, tag: &str) -> Value {
    json!({"summary": summary, "tags": [tag], "responses": {"default": {"$ref": "#/components/responses/Error"}}})
}

fn op_with_body(summary: &str, tag: &str, schema: &str) -> Value {
    let mut o = op(summary, tag);
    o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    o
}

/// The document.
pub fn document() -> Value {
    let sandbox = "/v1/sandboxes/{name}";
    let objects = "/apis/{group}/{version}/namespaces/{namespace}/{plural}";
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "paddock gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Sandboxes for AI agents: create, exec, files, and the Agent Sandbox objects. Auth: Authorization: Bearer <token>."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/sandboxes": {
                "post": op_with_body("Create a sandbox from a warm pool, a template or an image, and wait until it is Ready", "sandboxes", "CreateSandbox"),
                "get": op("List sandboxes", "sandboxes"),
            },
            sandbox: {
                "get": op("Describe a sandbox (by Sandbox or claim name)", "sandboxes"),
                "delete": op("Delete a sandbox (its claim, when it has one)", "sandboxes"),
            },
            format!("{sandbox}/pause"): {"post": op("Suspend: stop the workload, keep the volumes", "sandboxes")},
            format!("{sandbox}/resume"): {"post": op("Run a suspended sandbox again", "sandboxes")},
            format!("{sandbox}/logs"): {"get": op("The main process's output (?follow=true: until it ends)", "sandboxes")},
            format!("{sandbox}/tokens"): {"post": op_with_body("Mint a v2 scoped token for one port, method and path of this sandbox", "sandboxes", "MintToken")},
            format!("{sandbox}/exec"): {"post": op_with_body("Run a command to completion (the agent's POST /v1/exec)", "inside", "Process")},
            format!("{sandbox}/processes"): {
                "post": op_with_body("Start a process: NDJSON stream, or background (the agent's POST /v1/processes)", "inside", "Process"),
                "get": op("List processes", "inside"),
            },
            format!("{sandbox}/processes/ws"): {"get": op("Start and attach over WebSocket", "inside")},
            format!("{sandbox}/processes/{{id}}"): {"get": op("Process info", "inside"), "delete": op("Kill and forget", "inside")},
            format!("{sandbox}/processes/{{id}}/output"): {"get": op("Replay and follow output (NDJSON)", "inside")},
            format!("{sandbox}/processes/{{id}}/ws"): {"get": op("Attach over WebSocket", "inside")},
            format!("{sandbox}/processes/{{id}}/stdin"): {"post": op("Write stdin", "inside")},
            format!("{sandbox}/processes/{{id}}/signal"): {"post": op("Signal the process group", "inside")},
            format!("{sandbox}/processes/{{id}}/resize"): {"post": op("Resize the PTY", "inside")},
            format!("{sandbox}/processes/{{id}}/wait"): {"get": op("Wait for exit (long poll)", "inside")},
            format!("{sandbox}/files/{{path}}"): {
                "get": op("Read a file (Range) or list a directory; ?format=tar for a directory as tar", "inside"),
                "head": op("Whether a path exists", "inside"),
                "put": op("Write a file atomically (?mode=0644), or extract a tar (?format=tar)", "inside"),
                "delete": op("Delete a file or directory (?recursive=true)", "inside"),
            },
            format!("{sandbox}/fs/stat"): {"get": op("Describe a path (?path=; a final symlink is not followed): FileStat", "inside")},
            format!("{sandbox}/fs/mkdir"): {"post": op("Make a directory and its parents (?path=)", "inside")},
            format!("{sandbox}/fs/move"): {"post": op("Move a path (?from=&to=&overwrite=)", "inside")},
            format!("{sandbox}/fs/copy"): {"post": op("Copy a file or a directory tree (?from=&to=&overwrite=)", "inside")},
            format!("{sandbox}/fs/watch"): {"get": op("Stream changes under a directory as NDJSON FileEvents (?path=&recursive=)", "inside")},
            "/v1/apply": {"post": op("Create or update every object of a YAML/JSON stream (validated as a whole)", "objects")},
            objects: {"get": op("List or watch objects (?watch=true, NDJSON)", "objects"), "post": op("Create an object", "objects")},
            format!("{objects}/{{name}}"): {
                "get": op("Read an object", "objects"),
                "put": op("Replace an object", "objects"),
                "patch": op("JSON merge patch", "objects"),
                "delete": op("Delete an object (?propagationPolicy=)", "objects"),
            },
            format!("{objects}/{{name}}/status"): {"get": op("Read status", "objects"), "put": op("Replace status", "objects"), "patch": op("Merge-patch status", "objects")},
            "/v1/info": {"get": op("Version, backend and the runtimes this host offers", "service")},
            "/healthz": {"get": {"summary": "Liveness (no auth)", "tags": ["service"], "security": [], "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": op("Prometheus metrics", "service")},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": paddock_wire::schema::schemas(),
        }
    })
}
