//! A sandbox's egress record on a cluster, read from the in-cluster egress proxy's API
//! (`paddock egress --api-listen`).

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use paddock_backend::{ApiError, Code, EgressFeed, EgressLog, EgressRecord, EgressStream};

fn unavailable(url: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        Code::Unavailable,
        format!("the egress proxy's API at {url} did not answer: {e}"),
    )
}

/// The records at `url` (`…/egress`), and with `follow` the records that follow.
///
/// # Errors
/// The proxy cannot be reached or answers something else than records.
pub async fn read(url: &str, follow: bool) -> Result<EgressFeed, ApiError> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ApiError::new(Code::Internal, format!("egress API URL {url}: {e}")))?;
    let response = client.get(uri).await.map_err(|e| unavailable(url, e))?;
    if !response.status().is_success() {
        return Err(unavailable(url, format!("status {}", response.status())));
    }
    let mut body = response.into_body();
    if !follow {
        let bytes = body
            .collect()
            .await
            .map_err(|e| unavailable(url, e))?
            .to_bytes();
        let log: EgressLog = serde_json::from_slice(&bytes).map_err(|e| unavailable(url, e))?;
        return Ok(EgressFeed {
            records: log.items,
            follow: None,
        });
    }
    // Followed: one record per line, as they come.
    let (tx, rx) = tokio::sync::mpsc::channel::<EgressRecord>(256);
    tokio::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Ok(record) = serde_json::from_slice::<EgressRecord>(&line)
                    && tx.send(record).await.is_err()
                {
                    return;
                }
            }
            if pending.len() > 1 << 20 {
                return;
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
            .boxed();
    Ok(EgressFeed {
        records: Vec::new(),
        follow: Some(stream as EgressStream),
    })
}
