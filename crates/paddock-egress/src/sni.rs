//! The TLS server name a client sends first in a tunnel, read without ending the handshake (the
//! bytes are forwarded unchanged afterwards).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What the first bytes of a tunnel turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstFlight {
    /// A TLS ClientHello with this server name (`None`: it sent none).
    Tls(Option<String>),
    /// Not TLS (SSH, plain TCP, ...), or the client sent nothing in time.
    Other,
    /// It began as TLS, but no complete ClientHello came in time (or it did not parse): a
    /// server name may be hidden there, so the tunnel must not go ahead.
    IncompleteTls,
}

/// The most read while looking for a ClientHello.
const MAX_HELLO: usize = 16 * 1024;

/// Reads from `io` into `buf` until the ClientHello is complete (or it is clearly not TLS), and
/// says what the client asked for. `buf` holds every byte read, to forward.
///
/// # Errors
/// Reading failed.
pub async fn read_first_flight<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    wait: Duration,
) -> std::io::Result<FirstFlight> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = [0u8; 4096];
    loop {
        if !buf.is_empty() && buf[0] != 0x16 {
            return Ok(FirstFlight::Other);
        }
        if !buf.is_empty() {
            let mut acceptor = rustls::server::Acceptor::default();
            let mut reader: &[u8] = buf;
            while !reader.is_empty() {
                match acceptor.read_tls(&mut reader) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return Ok(FirstFlight::IncompleteTls),
                }
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let name = accepted.client_hello().server_name().map(str::to_owned);
                    return Ok(FirstFlight::Tls(name));
                }
                Ok(None) => {}
                Err(_) => return Ok(FirstFlight::IncompleteTls),
            }
        }
        let tls_begun = buf.first() == Some(&0x16);
        if buf.len() >= MAX_HELLO {
            return Ok(if tls_begun {
                FirstFlight::IncompleteTls
            } else {
                FirstFlight::Other
            });
        }
        let read = tokio::time::timeout_at(deadline, io.read(&mut chunk)).await;
        match read {
            Err(_) | Ok(Ok(0)) if tls_begun => return Ok(FirstFlight::IncompleteTls),
            Err(_) => return Ok(FirstFlight::Other),
            Ok(Ok(0)) => return Ok(FirstFlight::Other),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
}
