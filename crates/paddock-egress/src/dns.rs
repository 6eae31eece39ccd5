//! The DNS responder inside a sandbox's namespace (`127.0.0.1:53`): it answers A and AAAA
//! questions for names the rules allow, with the addresses the proxy would use, and NXDOMAIN
//! for every other name. It forwards nothing, so DNS is no channel out of the sandbox.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use paddock_wire::{EgressKind, EgressRecord};
use tokio::net::UdpSocket;

use crate::resolve::Resolver;
use crate::{SandboxEgress, now};

const TTL: u32 = 30;

/// Questions answered at once per sandbox; a flood beyond it is dropped (resolvers retry).
const IN_FLIGHT: usize = 64;

/// Answers questions on `socket` until the task is aborted.
pub(crate) async fn serve(socket: UdpSocket, egress: Arc<SandboxEgress>, resolver: Resolver) {
    let socket = Arc::new(socket);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "egress dns receive");
                continue;
            }
        };
        let Ok(question) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let socket = Arc::clone(&socket);
        let egress = Arc::clone(&egress);
        let resolver = resolver.clone();
        tokio::spawn(async move {
            let reply = answer(&question, &egress, &resolver).await;
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
            drop(slot);
        });
    }
}

/// The answer to one DNS message.
pub async fn answer(question: &Message, egress: &SandboxEgress, resolver: &Resolver) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(question.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(question.recursion_desired())
        .set_recursion_available(true);
    let Some(query) = question.queries().first() else {
        reply.set_response_code(ResponseCode::FormErr);
        return reply;
    };
    reply.add_query(query.clone());
    let name = query.name().to_ascii();
    let name = name.trim_end_matches('.');
    let rules = egress.rules();
    if !rules.resolves(name) {
        egress.record(EgressRecord {
            time: now(),
            kind: EgressKind::Dns,
            host: name.to_owned(),
            port: 53,
            address: None,
            method: None,
            path: None,
            allowed: false,
            rule: None,
            reason: Some(format!(
                "no egress rule names {name}, so it does not resolve"
            )),
            audited: false,
            credentials: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            duration_ms: 0,
        });
        reply.set_response_code(ResponseCode::NXDomain);
        return reply;
    }
    let wanted = query.query_type();
    if wanted != RecordType::A && wanted != RecordType::AAAA {
        return reply;
    }
    match resolver.resolve(name).await {
        Ok(addresses) => {
            for ip in addresses.into_iter().filter(|ip| rules.answerable(*ip)) {
                let data = match (ip, wanted) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                    _ => continue,
                };
                reply.add_answer(Record::from_rdata(query.name().clone(), TTL, data));
            }
        }
        Err(crate::ResolveError::NotFound(_)) => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Err(_) => {
            reply.set_response_code(ResponseCode::ServFail);
        }
    }
    reply
}
