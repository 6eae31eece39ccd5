//! Port forwarding over real sockets: `/v1/ports/{port}/{*path}` to a real HTTP server on
//! 127.0.0.1 — method, raw path, query, headers and streamed bodies both ways, WebSocket
//! relaying, and a clear 502 when nothing listens.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use common::{TestAgent, Via};
use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Starts `app` on 127.0.0.1 and returns its port.
async fn serve(app: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a test server");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("test server");
    });
    port
}

/// Echoes the request line, selected headers and the body as JSON.
async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.expect("request body").to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().expect("UTF-8 header").to_owned())
    };
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "host": header("host"),
        "authorization": header("authorization"),
        "x_custom": header("x-custom"),
        "body": String::from_utf8_lossy(&body),
    });
    ([("x-from-backend", "yes")], axum::Json(json)).into_response()
}

#[tokio::test]
async fn requests_are_forwarded_with_method_raw_path_query_and_body() {
    let agent = TestAgent::start().await;
    let port = serve(Router::new().fallback(any(echo))).await;
    for via in [Via::Tcp, Via::Unix] {
        let reply = agent
            .request_via(
                via,
                Method::PATCH,
                &format!("/v1/ports/{port}/api/a%2Fb/c?x=1&y=two%20words"),
                &[("x-custom", "kept"), ("connection", "x-custom, keep-alive")],
                "payload",
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.headers["x-from-backend"], "yes");
        let json = reply.json();
        assert_eq!(json["method"], "PATCH");
        assert_eq!(json["uri"], "/api/a%2Fb/c?x=1&y=two%20words");
        assert_eq!(json["host"], format!("127.0.0.1:{port}"));
        assert_eq!(json["body"], "payload");
        assert_eq!(
            json["x_custom"],
            serde_json::Value::Null,
            "a header listed in Connection was forwarded"
        );
    }
    let root = agent.get(&format!("/v1/ports/{port}")).await;
    assert_eq!(root.json()["uri"], "/");
}

#[tokio::test]
async fn the_agents_token_is_not_forwarded() {
    let agent = TestAgent::start_with(|c| c.token = Some("agent-secret".into())).await;
    let port = serve(Router::new().fallback(any(echo))).await;
    let reply = agent.get(&format!("/v1/ports/{port}/x")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["authorization"], serde_json::Value::Null);
    // And the endpoint needs the token like every other.
    let stream = tokio::net::UnixStream::connect(&agent.unix).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            http::Request::get(format!("/v1/ports/{port}/x"))
                .header("host", "agent")
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn response_bodies_are_streamed_as_produced() {
    let agent = TestAgent::start().await;
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = Arc::new(Mutex::new(Some(release_rx)));
    let app = Router::new().route(
        "/stream",
        get(move || {
            let release = release.lock().unwrap().take();
            async move {
                let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Bytes::from_static(b"first;"))).await;
                    if let Some(release) = release {
                        let _ = release.await;
                    }
                    let _ = tx.send(Ok(Bytes::from_static(b"second"))).await;
                });
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                Body::from_stream(stream)
            }
        }),
    );
    let port = serve(app).await;
    let mut sender = agent.connect(Via::Tcp).await.unwrap();
    let response = sender
        .send_request(
            http::Request::get(format!("/v1/ports/{port}/stream"))
                .header("host", "agent")
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first chunk arrived before the server finished")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, Bytes::from_static(b"first;"));
    release_tx.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, Bytes::from_static(b"second"));
}

#[tokio::test]
async fn request_bodies_are_streamed_to_the_server() {
    let agent = TestAgent::start().await;
    let app = Router::new().route(
        "/count",
        axum::routing::post(|body: Body| async move {
            let mut stream = body.into_data_stream();
            let mut total = 0usize;
            while let Some(chunk) = stream.next().await {
                total += chunk.unwrap().len();
            }
            total.to_string()
        }),
    );
    let port = serve(app).await;
    let payload = vec![b'z'; 8 << 20];
    let reply = agent
        .request(
            Method::POST,
            &format!("/v1/ports/{port}/count"),
            &[],
            payload,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), (8 << 20).to_string());
}

#[tokio::test]
async fn nothing_listening_is_502_unavailable() {
    let agent = TestAgent::start().await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let reply = agent.get(&format!("/v1/ports/{port}/anything")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        reply.json(),
        serde_json::json!({
            "code": "UNAVAILABLE",
            "message": format!("nothing listens on port {port} inside the sandbox"),
        })
    );
    let reply = agent.get("/v1/ports/99999/x").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["code"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn websockets_are_relayed() {
    let agent = TestAgent::start().await;
    let app = Router::new().route(
        "/ws",
        get(|upgrade: WebSocketUpgrade| async move {
            upgrade.on_upgrade(|mut socket| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    if let WsMessage::Text(text) = message {
                        let reply = format!("echo:{}", text.as_str());
                        if socket.send(WsMessage::Text(reply.into())).await.is_err() {
                            return;
                        }
                    }
                }
            })
        }),
    );
    let port = serve(app).await;
    let url = format!("ws://{}/v1/ports/{port}/ws?room=1", agent.tcp);
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for word in ["one", "two"] {
        socket.send(Message::Text(word.into())).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo:{word}"));
    }
    socket.close(None).await.unwrap();
}
