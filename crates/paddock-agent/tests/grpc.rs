//! gRPC `process.v1.ProcessService` compatibility (contract §3.2) with a tonic client over
//! plaintext HTTP/2: Start, Execute, WriteStdin, SendSignal, ResizeTTY and their error codes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestAgent, alive, eventually};
use paddock_agent::grpc::pb::process_service_client::ProcessServiceClient;
use paddock_agent::grpc::pb::start_response::Event;
use paddock_agent::grpc::pb::{
    ExecuteRequest, ProcessConfig, Pty, ResizeTtyRequest, SendSignalRequest, Signal, StartRequest,
    WriteStdinRequest, write_stdin_request,
};
use tonic::Code;
use tonic::transport::Channel;

async fn client(agent: &TestAgent) -> ProcessServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", agent.tcp))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    ProcessServiceClient::new(channel)
}

fn config(command: &[&str]) -> Option<ProcessConfig> {
    Some(ProcessConfig {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env_vars: HashMap::new(),
        cwd: None,
    })
}

/// Collects a Start stream: (process id, stdout, stderr, exit code).
async fn collect(
    stream: &mut tonic::Streaming<paddock_agent::grpc::pb::StartResponse>,
) -> (i32, Vec<u8>, Vec<u8>, i32) {
    let (mut id, mut out, mut err) = (-1, Vec::new(), Vec::new());
    while let Some(message) = stream.message().await.expect("stream message") {
        match message.event.expect("event set") {
            Event::Init(init) => {
                assert_eq!(id, -1, "Init comes first and once");
                id = init.process_id;
            }
            Event::Stdout(data) => out.extend(data),
            Event::Stderr(data) => err.extend(data),
            Event::Exit(exit) => return (id, out, err, exit.exit_code),
        }
    }
    panic!("stream ended without Exit");
}

#[tokio::test]
async fn execute_returns_buffered_output_and_exit_code() {
    let agent = TestAgent::start().await;
    let mut client = client(&agent).await;
    let mut env = HashMap::new();
    env.insert("WHO".to_owned(), "grpc".to_owned());
    let response = client
        .execute(ExecuteRequest {
            config: Some(ProcessConfig {
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hi $WHO; echo bad >&2; exit 5".into(),
                ],
                env_vars: env,
                cwd: None,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.exit_code, 5);
    assert_eq!(response.stdout, b"hi grpc\n");
    assert_eq!(response.stderr, b"bad\n");
}

#[tokio::test]
async fn start_streams_init_output_then_exit() {
    let agent = TestAgent::start().await;
    let mut client = client(&agent).await;
    let mut stream = client
        .start(StartRequest {
            config: config(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            pty: None,
        })
        .await
        .unwrap()
        .into_inner();
    let (id, out, err, code) = collect(&mut stream).await;
    assert!(id > 0);
    assert_eq!(out, b"out\n");
    assert_eq!(err, b"err\n");
    assert_eq!(code, 3);
}

#[tokio::test]
async fn write_stdin_feeds_a_started_process_and_eof_ends_it() {
    let agent = TestAgent::start().await;
    let mut client = client(&agent).await;
    let mut stream = client
        .start(StartRequest {
            config: config(&["cat"]),
            pty: None,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Init(init)) = stream.message().await.unwrap().unwrap().event else {
        panic!("Init first")
    };
    let id = init.process_id;
    client
        .write_stdin(WriteStdinRequest {
            process_id: id,
            payload: Some(write_stdin_request::Payload::Input(b"ping\n".to_vec())),
        })
        .await
        .unwrap();
    let Some(Event::Stdout(data)) = stream.message().await.unwrap().unwrap().event else {
        panic!("echo")
    };
    assert_eq!(data, b"ping\n");
    client
        .write_stdin(WriteStdinRequest {
            process_id: id,
            payload: Some(write_stdin_request::Payload::Eof(())),
        })
        .await
        .unwrap();
    let (_, _, _, code) = collect(&mut stream).await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn send_signal_reaches_the_process_group() {
    let agent = TestAgent::start().await;
    let mut client = client(&agent).await;
    let mut stream = client
        .start(StartRequest {
            config: config(&["sleep", "30"]),
            pty: None,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Init(init)) = stream.message().await.unwrap().unwrap().event else {
        panic!("Init first")
    };
    client
        .send_signal(SendSignalRequest {
            process_id: init.process_id,
            signal: Signal::Sigterm as i32,
        })
        .await
        .unwrap();
    let (_, _, _, code) = collect(&mut stream).await;
    assert_eq!(code, -1, "killed by a signal: no exit code");
}

#[tokio::test]
async fn resize_tty_changes_the_terminal_size() {
    let agent = TestAgent::start().await;
    let mut client = client(&agent).await;
    let mut stream = client
        .start(StartRequest {
            config: config(&["sh", "-c", "stty size; read x; stty size"]),
            pty: Some(Pty { cols: 90, rows: 20 }),
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Init(init)) = stream.message().await.unwrap().unwrap().event else {
        panic!("Init first")
    };
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("20 90") {
        if let Some(Event::Stdout(data)) = stream.message().await.unwrap().unwrap().event {
            seen.extend(data);
        }
    }
    client
        .resize_tty(ResizeTtyRequest {
            process_id: init.process_id,
            cols: 100,
            rows: 33,
        })
        .await
        .unwrap();
    client
        .write_stdin(WriteStdinRequest {
            process_id: init.process_id,
            payload: Some(write_stdin_request::Payload::Input(b"\n".to_vec())),
        })
        .await
        .unwrap();
    let (_, out, _, code) = collect(&mut stream).await;
    assert!(
        String::from_utf8_lossy(&out).contains("33 100"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(code, 0);
}

#[tokio::test]
async fn cancelling_the_start_stream_kills_the_process() {
    let agent = TestAgent::start().await;
    let mut client = client(&agent).await;
    let pid_file = agent.dir.path().join("grpc.pid");
    let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
    let mut stream = client
        .start(StartRequest {
            config: config(&["sh", "-c", &script]),
            pty: None,
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap();
    let pid = common::read_pid(&pid_file).await;
    assert!(alive(pid));
    drop(stream);
    assert!(
        eventually(Duration::from_secs(3), || !alive(pid)).await,
        "process survived a cancelled stream"
    );
}

#[tokio::test]
async fn error_codes_match_sandboxd() {
    let agent = TestAgent::start().await;
    let mut client = client(&agent).await;
    let empty = client
        .execute(ExecuteRequest {
            config: config(&[]),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let missing = client
        .execute(ExecuteRequest {
            config: config(&["no-such-program-xyz"]),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let escape = client
        .execute(ExecuteRequest {
            config: Some(ProcessConfig {
                command: vec!["pwd".into()],
                env_vars: HashMap::new(),
                cwd: Some("../..".into()),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(escape.code(), Code::PermissionDenied);
    let unknown = client
        .send_signal(SendSignalRequest {
            process_id: 4242,
            signal: Signal::Sigkill as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let unknown = client
        .resize_tty(ResizeTtyRequest {
            process_id: 4242,
            cols: 1,
            rows: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let mut stream = client
        .start(StartRequest {
            config: config(&["sleep", "30"]),
            pty: None,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Init(init)) = stream.message().await.unwrap().unwrap().event else {
        panic!("Init first")
    };
    let id = init.process_id;
    let unspecified = client
        .send_signal(SendSignalRequest {
            process_id: id,
            signal: Signal::Unspecified as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(unspecified.code(), Code::InvalidArgument);
    let no_tty = client
        .resize_tty(ResizeTtyRequest {
            process_id: id,
            cols: 10,
            rows: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(no_tty.code(), Code::FailedPrecondition);
    client
        .write_stdin(WriteStdinRequest {
            process_id: id,
            payload: Some(write_stdin_request::Payload::Eof(())),
        })
        .await
        .unwrap();
    let closed = client
        .write_stdin(WriteStdinRequest {
            process_id: id,
            payload: Some(write_stdin_request::Payload::Input(b"x".to_vec())),
        })
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition);
    client
        .send_signal(SendSignalRequest {
            process_id: id,
            signal: Signal::Sigkill as i32,
        })
        .await
        .unwrap();
    collect(&mut stream).await;
}

#[tokio::test]
async fn grpc_requires_the_token_when_auth_is_on() {
    let agent = TestAgent::start_with(|c| c.token = Some("grpc-token".to_owned())).await;
    let mut client = client(&agent).await;
    let denied = client
        .execute(ExecuteRequest {
            config: config(&["true"]),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let mut request = tonic::Request::new(ExecuteRequest {
        config: config(&["true"]),
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer grpc-token".parse().unwrap());
    assert_eq!(
        client
            .execute(request)
            .await
            .unwrap()
            .into_inner()
            .exit_code,
        0
    );
}
