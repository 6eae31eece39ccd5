//! Test hosts for egress tests, never the internet: a network namespace the test makes
//! (`ip netns` + veth to ours), holding HTTP, HTTPS (with a test CA) and DNS servers that run in
//! this process on sockets bound inside it.
//!
//! The namespace gets `10.213.N.1/24` on our side and `.2`, `.3`, `.4` on its side, one per
//! host name: `allowed.test` (.2), `denied.test` (.3) and `a.wild.test` (.4); the DNS server at
//! `.2:53` answers those names (and `rebind.test` → 127.0.0.1). `N` is taken with a lock file, so
//! test binaries running at once get different subnets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use paddock_egress::Netns;

/// Host names the test DNS server answers, and their last octet.
pub const HOSTS: [(&str, u8); 3] = [("allowed.test", 2), ("denied.test", 3), ("a.wild.test", 4)];

/// A namespace of test hosts, removed on drop.
#[derive(Debug)]
pub struct TestHosts {
    /// `ip netns` name.
    pub name: String,
    /// The third octet of the subnet.
    pub subnet: u8,
    /// The test CA's certificate (PEM): HTTPS servers' certificates chain to it.
    pub ca_pem: String,
    lock: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestHosts {
    /// Whether this machine can make them (root, `ip`).
    pub fn available() -> bool {
        rustix::process::geteuid().is_root()
            && Command::new("ip")
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success())
    }

    /// Makes the namespace and starts the servers (within a tokio runtime).
    ///
    /// # Panics
    /// When the namespace cannot be made: tests that need it check [`TestHosts::available`].
    pub fn start() -> Self {
        let locks = PathBuf::from("/run/paddock-test-net");
        std::fs::create_dir_all(&locks).expect("lock directory");
        let (subnet, lock) = (1..=250u8)
            .find_map(|n| {
                let lock = locks.join(n.to_string());
                let me = std::process::id().to_string();
                let taken = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&lock)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, me.as_bytes()));
                if taken.is_ok() {
                    return Some((n, lock));
                }
                // A lock whose process is gone was left by a killed test: take it over.
                // (An empty lock is being written: its owner is alive.)
                let owner = std::fs::read_to_string(&lock).unwrap_or_default();
                let alive = owner.is_empty()
                    || owner.trim() == me
                    || std::path::Path::new("/proc").join(owner.trim()).exists();
                if !alive && std::fs::write(&lock, me.as_bytes()).is_ok() {
                    Some((n, lock))
                } else {
                    None
                }
            })
            .expect("a free test subnet");
        let name = format!("pdt-{subnet}");
        let host_if = format!("pdt{subnet}");
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &host_if]);
        let base = format!("10.213.{subnet}");
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), name.clone()],
            vec![
                "link".into(),
                "add".into(),
                host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                "eth0".into(),
                "netns".into(),
                name.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("{base}.1/24"),
                "dev".into(),
                host_if.clone(),
            ],
            vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                "eth0".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            ip(&args).expect("setting up the test hosts' namespace");
        }
        for (_, octet) in HOSTS {
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{base}.{octet}/24"),
                "dev",
                "eth0",
            ])
            .expect("host address");
        }
        let (ca_pem, tls) = test_tls();
        let mut hosts = Self {
            name,
            subnet,
            ca_pem,
            lock,
            tasks: Vec::new(),
            seen: Arc::default(),
        };
        let ns = Netns::open(&hosts.netns_path());
        let mut tcp = Vec::new();
        for (_, octet) in HOSTS {
            tcp.push(SocketAddr::new(hosts.addr(octet), 80));
            tcp.push(SocketAddr::new(hosts.addr(octet), 443));
        }
        let sockets = ns
            .bind(&tcp, &[SocketAddr::new(hosts.addr(2), 53)])
            .expect("binding the test servers");
        for (i, listener) in sockets.tcp.into_iter().enumerate() {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let host = HOSTS[i / 2].0;
            let tls = (i % 2 == 1).then(|| Arc::clone(&tls));
            hosts.tasks.push(tokio::spawn(serve_http(
                listener,
                host,
                tls,
                Arc::clone(&hosts.seen),
            )));
        }
        let mut names: HashMap<String, IpAddr> = HOSTS
            .iter()
            .map(|(h, o)| ((*h).to_owned(), hosts.addr(*o)))
            .collect();
        names.insert("rebind.test".into(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        for udp in sockets.udp {
            let udp = tokio::net::UdpSocket::from_std(udp).expect("udp");
            hosts
                .tasks
                .push(tokio::spawn(serve_dns(udp, names.clone())));
        }
        hosts
    }

    /// The namespace's pin file.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `10.213.N.octet`.
    pub fn addr(&self, octet: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 213, self.subnet, octet))
    }

    /// The address of a test host name.
    pub fn addr_of(&self, host: &str) -> IpAddr {
        let octet = HOSTS
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, o)| *o)
            .unwrap_or_else(|| panic!("{host} is not a test host"));
        self.addr(octet)
    }

    /// Every `Authorization` header the test servers received, in order.
    pub fn seen_authorization(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The test DNS server.
    pub fn dns(&self) -> SocketAddr {
        SocketAddr::new(self.addr(2), 53)
    }

    /// `10.213.N.octet/32`, for a policy's cidrs.
    pub fn cidr(&self, host: &str) -> String {
        format!("{}/32", self.addr_of(host))
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = ip(&["netns", "del", &self.name]);
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// A test CA and a server config for every test host name, signed by it.
fn test_tls() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "paddock test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let names: Vec<String> = HOSTS.iter().map(|(h, _)| (*h).to_owned()).collect();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(names)
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("server cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    (ca.pem(), Arc::new(config))
}

/// Answers every request with `hello from <host>: <METHOD> <path>`, or `/bytes/N` with N bytes.
async fn serve_http(
    listener: tokio::net::TcpListener,
    host: &'static str,
    tls: Option<Arc<rustls::ServerConfig>>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let seen = Arc::clone(&seen);
                async move {
                    let path = req.uri().path().to_owned();
                    let body = match path
                        .strip_prefix("/bytes/")
                        .and_then(|n| n.parse::<usize>().ok())
                    {
                        Some(n) => Bytes::from(vec![b'x'; n]),
                        None => Bytes::from(format!("hello from {host}: {} {path}", req.method())),
                    };
                    let host_header = req.headers().get(http::header::HOST).cloned();
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    if !auth.is_empty()
                        && let Ok(mut s) = seen.lock()
                    {
                        s.push(auth.clone());
                    }
                    let mut response = http::Response::new(
                        Full::new(body).map_err(|never| match never {}).boxed(),
                    );
                    if let Ok(v) = http::HeaderValue::from_str(&auth) {
                        response.headers_mut().insert("x-seen-authorization", v);
                    }
                    if let Some(h) = host_header {
                        response.headers_mut().insert("x-seen-host", h);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

async fn serve_dns(socket: tokio::net::UdpSocket, names: HashMap<String, IpAddr>) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(q) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut reply = Message::new();
        reply.set_id(q.id()).set_message_type(MessageType::Response);
        if let Some(query) = q.queries().first() {
            reply.add_query(query.clone());
            let name = query.name().to_ascii();
            match names.get(name.trim_end_matches('.')) {
                Some(IpAddr::V4(v4)) => {
                    if query.query_type() == RecordType::A {
                        reply.add_answer(Record::from_rdata(
                            query.name().clone(),
                            5,
                            RData::A(A(*v4)),
                        ));
                    }
                }
                Some(IpAddr::V6(_)) => {}
                None => {
                    reply.set_response_code(ResponseCode::NXDomain);
                }
            }
        }
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}
