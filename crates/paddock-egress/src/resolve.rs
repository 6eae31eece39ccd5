//! Name resolution for the proxy: the host's resolver, or a given DNS server (what tests and
//! hosts with their own resolver for sandboxes use).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

/// Where names are resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Resolver {
    /// The host's resolver (`getaddrinfo`).
    #[default]
    System,
    /// This DNS server, over UDP.
    Server(SocketAddr),
}

/// A name could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// No such name (or no address of it).
    #[error("{0} does not resolve")]
    NotFound(String),
    /// The resolver did not answer.
    #[error("resolving {name} failed: {reason}")]
    Failed {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

const TIMEOUT: Duration = Duration::from_secs(3);

impl Resolver {
    /// The addresses of `name`, IPv4 first.
    ///
    /// # Errors
    /// The name does not exist or the resolver failed.
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let mut found = match self {
            Resolver::System => {
                let lookup = tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((name, 0)))
                    .await
                    .map_err(|_| failed(name, "timed out"))?;
                match lookup {
                    Ok(addrs) => addrs.map(|a| a.ip()).collect::<Vec<_>>(),
                    Err(_) => return Err(ResolveError::NotFound(name.to_owned())),
                }
            }
            Resolver::Server(server) => {
                let (a, aaaa) = tokio::join!(
                    query(*server, name, RecordType::A),
                    query(*server, name, RecordType::AAAA)
                );
                let mut all = a?;
                all.extend(aaaa.unwrap_or_default());
                all
            }
        };
        found.sort_by_key(|ip| ip.is_ipv6());
        found.dedup();
        if found.is_empty() {
            return Err(ResolveError::NotFound(name.to_owned()));
        }
        Ok(found)
    }
}

fn failed(name: &str, reason: impl Into<String>) -> ResolveError {
    ResolveError::Failed {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

async fn query(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
) -> Result<Vec<IpAddr>, ResolveError> {
    let fqdn = Name::from_ascii(name)
        .map_err(|e| failed(name, e.to_string()))?
        .append_domain(&Name::root())
        .map_err(|e| failed(name, e.to_string()))?;
    let id: u16 = rand_id();
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(fqdn, kind));
    let bytes = message.to_vec().map_err(|e| failed(name, e.to_string()))?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| failed(name, "bind address"))?
    } else {
        "[::]:0".parse().map_err(|_| failed(name, "bind address"))?
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| failed(name, e.to_string()))?;
    socket
        .send_to(&bytes, server)
        .await
        .map_err(|e| failed(name, e.to_string()))?;
    let mut buf = vec![0u8; 4096];
    let reply = loop {
        let (n, from) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buf))
            .await
            .map_err(|_| failed(name, format!("{server} did not answer")))?
            .map_err(|e| failed(name, e.to_string()))?;
        if from != server {
            continue;
        }
        let reply = Message::from_vec(&buf[..n]).map_err(|e| failed(name, e.to_string()))?;
        if reply.id() == id {
            break reply;
        }
    };
    match reply.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err(ResolveError::NotFound(name.to_owned())),
        other => return Err(failed(name, format!("{server} answered {other}"))),
    }
    Ok(reply
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect())
}

fn rand_id() -> u16 {
    let mut id = [0u8; 2];
    // Without OS randomness a fixed id still works: replies are matched by source too.
    let _ = getrandom::fill(&mut id);
    u16::from_le_bytes(id)
}
