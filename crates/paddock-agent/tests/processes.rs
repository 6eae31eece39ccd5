//! paddock's own process API against a real agent: buffered exec, NDJSON and WebSocket
//! streaming, background processes with replay, stdin, signals, PTY, limits and auth.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestAgent, alive, eventually, read_pid};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn exec_returns_exit_code_output_and_duration() {
    let agent = TestAgent::start().await;
    let reply = agent
        .exec(json!({"command": "echo out; echo err >&2; exit 3"}))
        .await;
    assert_eq!(reply["exit_code"], 3);
    assert_eq!(reply["signal"], Value::Null);
    assert_eq!(reply["stdout"], "out\n");
    assert_eq!(reply["stderr"], "err\n");
    assert_eq!(reply["stdout_truncated"], false);
    assert_eq!(reply["timed_out"], false);
    assert!(reply["duration_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn exec_passes_argv_env_cwd_and_stdin() {
    let agent = TestAgent::start().await;
    std::fs::create_dir(agent.root_path("sub")).unwrap();
    let reply = agent
        .exec(json!({
            "argv": ["sh", "-c", "printf '%s|%s|' \"$GREETING\" \"$(pwd)\"; cat"],
            "env": {"GREETING": "hi there"},
            "cwd": "sub",
            "stdin": "from stdin"
        }))
        .await;
    let root = std::fs::canonicalize(&agent.root).unwrap();
    assert_eq!(
        reply["stdout"],
        format!("hi there|{}/sub|from stdin", root.display())
    );
}

#[tokio::test]
async fn exec_never_leaks_the_agent_token_or_config_to_children() {
    let agent = TestAgent::start_with(|c| c.token = Some("s3cret-token".to_owned())).await;
    let reply = agent.exec(json!({"argv": ["env"]})).await;
    let env = reply["stdout"].as_str().unwrap();
    assert!(!env.contains("s3cret-token"));
    assert!(!env.contains("PADDOCK_AGENT_"));
}

#[tokio::test]
async fn exec_output_beyond_the_cap_is_truncated_and_flagged() {
    let agent = TestAgent::start_with(|c| c.limits.max_output_bytes = 1000).await;
    let reply = agent
        .exec(json!({"command": "head -c 100000 /dev/zero | tr '\\0' a; echo done >&2"}))
        .await;
    assert_eq!(reply["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!(reply["stdout_truncated"], true);
    assert_eq!(reply["stderr"], "done\n");
    assert_eq!(reply["stderr_truncated"], false);
    assert_eq!(reply["exit_code"], 0);
    let smaller = agent
        .exec(json!({"command": "echo 0123456789", "max_output_bytes": 4}))
        .await;
    assert_eq!(smaller["stdout"], "0123");
}

#[tokio::test]
async fn exec_binary_output_is_base64_with_an_encoding_field() {
    let agent = TestAgent::start().await;
    let reply = agent.exec(json!({"command": "printf '\\377\\000A'"})).await;
    assert_eq!(reply["stdout_encoding"], "base64");
    assert_eq!(reply["stdout"], "/wBB");
}

#[tokio::test]
async fn exec_timeout_kills_the_process_group_including_grandchildren() {
    let agent = TestAgent::start().await;
    let pid_file = agent.dir.path().join("gc.pid");
    let started = std::time::Instant::now();
    let reply = agent
        .exec(json!({
            "command": format!("sleep 30 & echo $! > {}; wait", pid_file.display()),
            "timeout_ms": 300
        }))
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(reply["timed_out"], true);
    assert_eq!(reply["signal"], 9);
    assert_eq!(reply["exit_code"], Value::Null);
    let grandchild = read_pid(&pid_file).await;
    assert!(
        eventually(Duration::from_secs(2), || !alive(grandchild)).await,
        "grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn exec_returns_when_a_background_grandchild_keeps_stdout_open() {
    let agent =
        TestAgent::start_with(|c| c.limits.output_drain_timeout = Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let reply = agent
        .exec(json!({"command": "echo first; sleep 5 &"}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(reply["stdout"], "first\n");
    assert_eq!(reply["exit_code"], 0);
}

#[tokio::test]
async fn exec_errors_name_the_problem() {
    let agent = TestAgent::start().await;
    let cases = [
        (
            json!({"argv": []}),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        ),
        (
            json!({"argv": ["x"], "command": "y"}),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        ),
        (
            json!({"argv": ["no-such-program-xyz"]}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            json!({"argv": ["true"], "cwd": "missing-dir"}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            json!({"argv": ["true"], "env": {"A=B": "x"}}),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        ),
        (
            json!({"argv": ["true"], "stdin": "!!", "stdin_encoding": "base64"}),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        ),
        (
            json!({"argv": ["true"], "tiemout_ms": 5}),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        ),
    ];
    for (body, status, code) in cases {
        let reply = agent.post_json("/v1/exec", body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
        assert_eq!(reply.json()["code"], code, "{body}");
        assert!(!reply.json()["message"].as_str().unwrap().is_empty());
    }
    let unknown = agent
        .post_json("/v1/exec", json!({"argv": ["true"], "tiemout_ms": 5}))
        .await;
    assert!(unknown.text().contains("tiemout_ms"), "{}", unknown.text());
    let malformed = agent.post_raw("/v1/exec", "{\"argv\": [\"true\"").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(
        malformed.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
}

#[tokio::test]
async fn oversized_request_bodies_are_413() {
    let agent = TestAgent::start_with(|c| c.limits.max_request_body = 1024).await;
    let reply = agent
        .post_json(
            "/v1/exec",
            json!({"argv": ["true"], "stdin": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["code"], "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn too_many_processes_is_429() {
    let agent = TestAgent::start_with(|c| c.limits.max_processes = 2).await;
    for _ in 0..2 {
        let reply = agent
            .post_json(
                "/v1/processes",
                json!({"argv": ["sleep", "30"], "background": true}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let reply = agent.post_json("/v1/exec", json!({"argv": ["true"]})).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.json()["code"], "TOO_MANY_PROCESSES");
    let legacy = agent
        .post_json("/execute", json!({"command": "true"}))
        .await;
    assert_eq!(legacy.status, StatusCode::TOO_MANY_REQUESTS);
    agent.stop().await;
}

#[tokio::test]
async fn start_streams_ndjson_start_output_and_exit_in_order() {
    let agent = TestAgent::start().await;
    let reply = agent
        .post_json(
            "/v1/processes",
            json!({"command": "echo one; echo two >&2; printf 'caf\\303\\251'; exit 4"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/x-ndjson");
    let events = reply.lines();
    assert_eq!(events[0]["type"], "start");
    assert!(events[0]["pid"].as_i64().unwrap() > 0);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "exit");
    assert_eq!(last["exit_code"], 4);
    let stdout: String = events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(stdout, "one\ncafé");
    let stderr: Vec<&Value> = events.iter().filter(|e| e["type"] == "stderr").collect();
    assert_eq!(stderr[0]["data"], "two\n");
    // Offsets count stdout and stderr bytes together.
    let mut expected = 0;
    for event in events
        .iter()
        .filter(|e| e["type"] == "stdout" || e["type"] == "stderr")
    {
        assert_eq!(event["offset"], expected);
        expected += event["data"].as_str().unwrap().len() as u64;
    }
}

#[tokio::test]
async fn ndjson_never_splits_a_utf8_character_across_events() {
    let agent = TestAgent::start().await;
    // 40000 three-byte characters: larger than one pipe read, so reads end mid-character.
    let reply = agent
        .post_json("/v1/processes", json!({"command": "i=0; while [ $i -lt 400 ]; do printf '€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€'; i=$((i+1)); done"}))
        .await;
    let events = reply.lines();
    let chunks: Vec<&Value> = events.iter().filter(|e| e["type"] == "stdout").collect();
    assert!(
        chunks.iter().all(|e| e.get("encoding").is_none()),
        "a chunk fell back to base64"
    );
    let total: usize = chunks
        .iter()
        .map(|e| e["data"].as_str().unwrap().chars().count())
        .sum();
    assert_eq!(total, 40_000);
}

#[tokio::test]
async fn foreground_process_dies_when_its_client_disconnects() {
    let agent = TestAgent::start().await;
    let mut sender = agent.connect(common::Via::Tcp).await.unwrap();
    let request = http::Request::post("/v1/processes")
        .header("host", "agent")
        .body(Full::new(Bytes::from(
            json!({"argv": ["sleep", "30"]}).to_string(),
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let start: Value =
        serde_json::from_slice(first.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let pid = common::pid(&start["pid"]);
    assert!(alive(pid));
    drop(body);
    drop(sender);
    assert!(
        eventually(Duration::from_secs(3), || !alive(pid)).await,
        "foreground process survived its client"
    );
}

#[tokio::test]
async fn background_process_survives_disconnect_and_replays_output_from_an_offset() {
    let agent = TestAgent::start().await;
    let reply = agent
        .post_json(
            "/v1/processes",
            json!({"command": "echo alpha; echo beta; sleep 0.3; echo gamma", "background": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let info = reply.json();
    let id = info["id"].as_u64().unwrap();
    assert_eq!(info["state"], "running");
    assert_eq!(info["background"], true);
    let waited = agent
        .get(&format!("/v1/processes/{id}/wait?timeout_ms=5000"))
        .await
        .json();
    assert_eq!(waited["state"], "exited");
    assert_eq!(waited["exit_code"], 0);
    assert_eq!(waited["output_end"], 17);
    // Full replay after exit.
    let all = agent
        .get(&format!("/v1/processes/{id}/output"))
        .await
        .lines();
    let text: String = all
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(text, "alpha\nbeta\ngamma\n");
    assert_eq!(all.last().unwrap()["type"], "exit");
    // Resume from an offset.
    let resumed = agent
        .get(&format!("/v1/processes/{id}/output?offset=6"))
        .await
        .lines();
    assert_eq!(resumed[0]["offset"], 6);
    let text: String = resumed
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(text, "beta\ngamma\n");
    let listed = agent.get("/v1/processes").await.json();
    assert!(
        listed["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id)
    );
    assert_eq!(
        agent.delete(&format!("/v1/processes/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        agent.get(&format!("/v1/processes/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn background_process_keeps_running_after_an_attached_client_leaves() {
    let agent = TestAgent::start().await;
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"command": "while :; do echo tick; sleep 0.02; done", "background": true}),
        )
        .await
        .json();
    let (id, pid) = (info["id"].as_u64().unwrap(), common::pid(&info["pid"]));
    {
        let mut sender = agent.connect(common::Via::Unix).await.unwrap();
        let request = http::Request::get(format!("/v1/processes/{id}/output"))
            .header("host", "agent")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // The follower is gone; the process keeps producing output well after that.
    let output_end = |info: &Value| info["output_end"].as_u64().unwrap();
    let left_at = output_end(&agent.get(&format!("/v1/processes/{id}")).await.json());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while output_end(&agent.get(&format!("/v1/processes/{id}")).await.json()) < left_at + 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "background process stopped producing output after its follower left"
        );
        tokio::task::yield_now().await;
    }
    assert!(alive(pid), "background process died with its follower");
    let reply = agent
        .post_json(
            &format!("/v1/processes/{id}/signal"),
            json!({"signal": "SIGTERM"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let done = agent
        .get(&format!("/v1/processes/{id}/wait?timeout_ms=5000"))
        .await
        .json();
    assert_eq!(done["signal"], 15);
}

#[tokio::test]
async fn replay_buffer_is_bounded_and_reports_dropped_output() {
    let agent = TestAgent::start_with(|c| c.limits.output_buffer_bytes = 64 * 1024).await;
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"command": "head -c 1000000 /dev/zero", "background": true}),
        )
        .await
        .json();
    let id = info["id"].as_u64().unwrap();
    let done = agent
        .get(&format!("/v1/processes/{id}/wait?timeout_ms=5000"))
        .await
        .json();
    assert_eq!(done["output_end"], 1_000_000);
    let start = done["output_start"].as_u64().unwrap();
    assert!(start > 800_000, "ring kept too much: starts at {start}");
    let events = agent
        .get(&format!("/v1/processes/{id}/output?offset=0"))
        .await
        .lines();
    assert_eq!(events[0]["type"], "dropped");
    assert_eq!(events[0]["from"], 0);
    assert_eq!(events[0]["to"], start);
}

#[tokio::test]
async fn stdin_can_be_written_and_closed_over_http() {
    let agent = TestAgent::start().await;
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"argv": ["cat"], "background": true, "keep_stdin_open": true}),
        )
        .await
        .json();
    let id = info["id"].as_u64().unwrap();
    let write = agent
        .request(
            Method::POST,
            &format!("/v1/processes/{id}/stdin"),
            &[],
            "hello ",
        )
        .await;
    assert_eq!(write.status, StatusCode::NO_CONTENT);
    let close = agent
        .request(
            Method::POST,
            &format!("/v1/processes/{id}/stdin?eof=true"),
            &[],
            "world",
        )
        .await;
    assert_eq!(close.status, StatusCode::NO_CONTENT);
    let done = agent
        .get(&format!("/v1/processes/{id}/wait?timeout_ms=5000"))
        .await
        .json();
    assert_eq!(done["exit_code"], 0);
    let events = agent
        .get(&format!("/v1/processes/{id}/output"))
        .await
        .lines();
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(text, "hello world");
    let late = agent
        .request(Method::POST, &format!("/v1/processes/{id}/stdin"), &[], "x")
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.json()["code"], "FAILED_PRECONDITION");
}

#[tokio::test]
async fn wait_long_polls_and_returns_running_on_timeout() {
    let agent = TestAgent::start().await;
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"argv": ["sleep", "30"], "background": true}),
        )
        .await
        .json();
    let id = info["id"].as_u64().unwrap();
    let started = std::time::Instant::now();
    let waited = agent
        .get(&format!("/v1/processes/{id}/wait?timeout_ms=200"))
        .await
        .json();
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert_eq!(waited["state"], "running");
    agent.delete(&format!("/v1/processes/{id}")).await;
}

#[tokio::test]
async fn started_process_timeout_kills_the_group() {
    let agent = TestAgent::start().await;
    let pid_file = agent.dir.path().join("bg.pid");
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"command": format!("sleep 30 & echo $! > {}; wait", pid_file.display()), "timeout_ms": 300, "background": true}),
        )
        .await
        .json();
    let id = info["id"].as_u64().unwrap();
    let done = agent
        .get(&format!("/v1/processes/{id}/wait?timeout_ms=5000"))
        .await
        .json();
    assert_eq!(done["timed_out"], true);
    let grandchild = read_pid(&pid_file).await;
    assert!(eventually(Duration::from_secs(2), || !alive(grandchild)).await);
}

#[tokio::test]
async fn pty_process_gets_a_terminal_and_can_be_resized() {
    let agent = TestAgent::start().await;
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"command": "tty; stty size; read line; stty size; echo \"got $line\"", "pty": {"cols": 100, "rows": 30}, "background": true}),
        )
        .await
        .json();
    let id = info["id"].as_u64().unwrap();
    assert_eq!(info["pty"], true);
    // Resize only once the first `stty size` has run (its answer is in the output).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !agent
        .get(&format!("/v1/processes/{id}/output?offset=0&follow=false"))
        .await
        .text()
        .contains("30 100")
    {
        assert!(tokio::time::Instant::now() < deadline, "no first stty size");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resized = agent
        .post_json(
            &format!("/v1/processes/{id}/resize"),
            json!({"cols": 120, "rows": 40}),
        )
        .await;
    assert_eq!(resized.status, StatusCode::NO_CONTENT);
    agent
        .request(
            Method::POST,
            &format!("/v1/processes/{id}/stdin"),
            &[],
            "hello\n",
        )
        .await;
    let done = agent
        .get(&format!("/v1/processes/{id}/wait?timeout_ms=5000"))
        .await
        .json();
    assert_eq!(done["exit_code"], 0);
    let events = agent
        .get(&format!("/v1/processes/{id}/output"))
        .await
        .lines();
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("30 100"), "{text}");
    assert!(text.contains("40 120"), "{text}");
    assert!(text.contains("got hello"), "{text}");
    let not_pty = agent
        .post_json(
            "/v1/processes",
            json!({"argv": ["sleep", "5"], "background": true}),
        )
        .await
        .json();
    let reply = agent
        .post_json(
            &format!("/v1/processes/{}/resize", not_pty["id"]),
            json!({"cols": 10, "rows": 10}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.json()["code"], "FAILED_PRECONDITION");
    agent
        .delete(&format!("/v1/processes/{}", not_pty["id"]))
        .await;
}

#[tokio::test]
async fn unknown_process_and_bad_signal_are_clear_errors() {
    let agent = TestAgent::start().await;
    let reply = agent.get("/v1/processes/999").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["code"], "NOT_FOUND");
    assert_eq!(
        agent.get("/v1/processes/abc").await.status,
        StatusCode::BAD_REQUEST
    );
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"argv": ["sleep", "5"], "background": true}),
        )
        .await
        .json();
    let bad = agent
        .post_json(
            &format!("/v1/processes/{}/signal", info["id"]),
            json!({"signal": "SIGBOGUS"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["message"].as_str().unwrap().contains("SIGBOGUS"));
    agent.delete(&format!("/v1/processes/{}", info["id"])).await;
}

async fn ws_connect(
    agent: &TestAgent,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(agent.tcp)
        .await
        .expect("connect");
    let (socket, _) = tokio_tungstenite::client_async(format!("ws://{}{path}", agent.tcp), stream)
        .await
        .expect("websocket handshake");
    socket
}

async fn next_event(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Option<Value> {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .ok()??
            .ok()?;
        match message {
            Message::Text(text) => {
                return Some(serde_json::from_str(text.as_str()).expect("JSON event"));
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

#[tokio::test]
async fn websocket_starts_a_process_and_carries_stdin_signals_and_exit() {
    use futures_util::SinkExt;
    let agent = TestAgent::start().await;
    let mut socket = ws_connect(&agent, "/v1/processes/ws").await;
    socket
        .send(Message::text(
            json!({"argv": ["cat"], "keep_stdin_open": true}).to_string(),
        ))
        .await
        .unwrap();
    let start = next_event(&mut socket).await.unwrap();
    assert_eq!(start["type"], "start");
    socket
        .send(Message::text(
            json!({"type": "stdin", "data": "aGVsbG8K", "encoding": "base64"}).to_string(),
        ))
        .await
        .unwrap();
    let echoed = next_event(&mut socket).await.unwrap();
    assert_eq!(echoed["type"], "stdout");
    assert_eq!(echoed["data"], "hello\n");
    socket
        .send(Message::binary(b"raw bytes\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut socket).await.unwrap()["data"],
        "raw bytes\n"
    );
    socket
        .send(Message::text(json!({"type": "bogus"}).to_string()))
        .await
        .unwrap();
    let error = next_event(&mut socket).await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "INVALID_ARGUMENT");
    socket
        .send(Message::text(
            json!({"type": "signal", "signal": "INT"}).to_string(),
        ))
        .await
        .unwrap();
    let exit = next_event(&mut socket).await.unwrap();
    assert_eq!(exit["type"], "exit");
    assert_eq!(exit["signal"], 2);
    assert!(
        next_event(&mut socket).await.is_none(),
        "socket closes after exit"
    );
}

#[tokio::test]
async fn websocket_eof_closes_stdin() {
    use futures_util::SinkExt;
    let agent = TestAgent::start().await;
    let mut socket = ws_connect(&agent, "/v1/processes/ws").await;
    socket
        .send(Message::text(
            json!({"argv": ["wc", "-c"], "keep_stdin_open": true}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next_event(&mut socket).await.unwrap()["type"], "start");
    socket
        .send(Message::text(
            json!({"type": "stdin", "data": "12345"}).to_string(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(json!({"type": "eof"}).to_string()))
        .await
        .unwrap();
    let out = next_event(&mut socket).await.unwrap();
    assert_eq!(out["data"].as_str().unwrap().trim(), "5");
    assert_eq!(next_event(&mut socket).await.unwrap()["type"], "exit");
}

#[tokio::test]
async fn websocket_start_errors_are_reported_as_an_error_event() {
    use futures_util::SinkExt;
    let agent = TestAgent::start().await;
    let mut socket = ws_connect(&agent, "/v1/processes/ws").await;
    socket
        .send(Message::text(
            json!({"argv": ["no-such-program-xyz"]}).to_string(),
        ))
        .await
        .unwrap();
    let error = next_event(&mut socket).await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "NOT_FOUND");
}

#[tokio::test]
async fn websocket_reattaches_to_a_background_process_with_replay_and_pty_resize() {
    use futures_util::SinkExt;
    let agent = TestAgent::start().await;
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"command": "echo ready; read x; stty size", "pty": {"cols": 80, "rows": 24}, "background": true}),
        )
        .await
        .json();
    let id = info["id"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while agent.get(&format!("/v1/processes/{id}")).await.json()["output_end"]
        .as_u64()
        .unwrap()
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "no output yet");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut socket = ws_connect(&agent, &format!("/v1/processes/{id}/ws?offset=0")).await;
    let first = next_event(&mut socket).await.unwrap();
    assert_eq!(first["offset"], 0);
    assert!(first["data"].as_str().unwrap().starts_with("ready"));
    socket
        .send(Message::text(
            json!({"type": "resize", "cols": 132, "rows": 50}).to_string(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(
            json!({"type": "stdin", "data": "go\n"}).to_string(),
        ))
        .await
        .unwrap();
    let mut seen = String::new();
    loop {
        let event = next_event(&mut socket).await.expect("events until exit");
        if event["type"] == "exit" {
            break;
        }
        seen.push_str(event["data"].as_str().unwrap_or(""));
    }
    assert!(seen.contains("50 132"), "{seen}");
}

#[tokio::test]
async fn auth_token_guards_everything_but_root_and_health() {
    let agent = TestAgent::start_with(|c| c.token = Some("tok-123".to_owned())).await;
    let mut raw = agent.connect(common::Via::Tcp).await.unwrap();
    let mut send = async |method: Method, path: &str, auth: Option<&str>| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "agent");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        raw.send_request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap()
            .status()
    };
    assert_eq!(send(Method::GET, "/", None).await, StatusCode::OK);
    assert_eq!(send(Method::GET, "/v1/health", None).await, StatusCode::OK);
    assert_eq!(
        send(Method::GET, "/v1/processes", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(Method::GET, "/v1/files/", Some("Bearer wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(Method::GET, "/list/", Some("Bearer tok-12")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(Method::GET, "/v1/processes", Some("Bearer tok-123")).await,
        StatusCode::OK
    );
    // The harness sends the token itself.
    assert_eq!(agent.get("/v1/files/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_terminates_running_process_groups() {
    let agent = TestAgent::start().await;
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"command": "trap '' TERM; sleep 30", "background": true}),
        )
        .await
        .json();
    let pid = common::pid(&info["pid"]);
    let plain = agent
        .post_json(
            "/v1/processes",
            json!({"argv": ["sleep", "30"], "background": true}),
        )
        .await
        .json();
    let plain_pid = common::pid(&plain["pid"]);
    let started = std::time::Instant::now();
    agent.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(2), || !alive(pid) && !alive(plain_pid)).await,
        "children survived shutdown"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_but_busy_ones_are_not() {
    use tokio::io::AsyncReadExt;
    let agent = TestAgent::start_with(|c| c.limits.idle_timeout = Duration::from_millis(200)).await;
    let mut idle = tokio::net::TcpStream::connect(agent.tcp).await.unwrap();
    let mut buf = [0u8; 16];
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf))
        .await
        .expect("closed in time");
    assert_eq!(read.unwrap(), 0, "server closed the idle connection");
    assert!(started.elapsed() >= Duration::from_millis(150));
    // A long poll longer than the idle timeout is in flight, so its connection stays open.
    let info = agent
        .post_json(
            "/v1/processes",
            json!({"argv": ["sleep", "30"], "background": true}),
        )
        .await
        .json();
    let waited = agent
        .get(&format!("/v1/processes/{}/wait?timeout_ms=700", info["id"]))
        .await;
    assert_eq!(waited.status, StatusCode::OK);
    agent.delete(&format!("/v1/processes/{}", info["id"])).await;
}
