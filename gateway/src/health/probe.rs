//! One probe of one real server, as a small state machine on non-blocking sockets that the
//! runner's mio `Poll` drives: TCP connect, HTTP GET over it, a UDP exchange, or a program run.
//! A probe ends with an [`Outcome`]; the runner enforces the deadline.

use super::check::{Check, CheckKind};
use super::state::Outcome;
use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

/// Bytes of an HTTP answer read at most (status line and the body checked for a substring).
const HTTP_READ_MAX: usize = 64 * 1024;

enum Stage {
    Connecting(TcpStream),
    HttpSend(TcpStream, Vec<u8>, usize),
    HttpRead(TcpStream, Vec<u8>),
    Udp(UdpSocket),
    Exec(Child),
}

/// A probe in flight.
pub struct Probe {
    stage: Option<Stage>,
    kind: CheckKind,
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::TimedOut => "timeout".into(),
        ErrorKind::HostUnreachable => "host unreachable".into(),
        ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

fn tcp_connect(dst: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(dst),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_nonblocking(true)?;
    if let Some(src) = source {
        s.bind(&SocketAddr::from((src, 0)).into())?;
    }
    match s.connect(&dst.into()) {
        Ok(()) => {}
        // EINPROGRESS: completion is reported as writability.
        Err(e) if e.raw_os_error() == Some(115) || e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(s.into()))
}

impl Probe {
    /// Starts a probe of `addr` with `check`, registered under `token`. An error is the probe's
    /// immediate result.
    pub fn start(
        reg: &Registry,
        token: Token,
        addr: IpAddr,
        check: &Check,
    ) -> Result<Probe, Outcome> {
        let dst = SocketAddr::new(addr, check.port);
        let down = |e: std::io::Error| Outcome::Down(describe(&e));
        let stage = match &check.kind {
            CheckKind::Tcp | CheckKind::Http { .. } => {
                let mut s = tcp_connect(dst, check.source).map_err(down)?;
                reg.register(&mut s, token, Interest::WRITABLE)
                    .map_err(down)?;
                Stage::Connecting(s)
            }
            CheckKind::Udp { payload, .. } => {
                let any = match addr {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                let src = SocketAddr::new(check.source.unwrap_or(any), 0);
                let mut s = UdpSocket::bind(src).map_err(down)?;
                s.connect(dst).map_err(down)?;
                s.send(payload).map_err(down)?;
                reg.register(&mut s, token, Interest::READABLE)
                    .map_err(down)?;
                Stage::Udp(s)
            }
            CheckKind::Exec { program } => {
                let child = Command::new(program)
                    .arg(addr.to_string())
                    .arg(check.port.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| Outcome::Down(format!("{}: {e}", program.display())))?;
                Stage::Exec(child)
            }
        };
        Ok(Probe {
            stage: Some(stage),
            kind: check.kind.clone(),
        })
    }

    /// Whether this probe waits on a program (polled with [`Probe::poll_exec`], not by mio).
    pub fn is_exec(&self) -> bool {
        matches!(self.stage, Some(Stage::Exec(_)))
    }

    /// The program's exit, if it has ended.
    pub fn poll_exec(&mut self) -> Option<Outcome> {
        let Some(Stage::Exec(child)) = &mut self.stage else {
            return None;
        };
        match child.try_wait() {
            Ok(Some(st)) if st.success() => Some(Outcome::Up),
            Ok(Some(st)) => Some(Outcome::Down(format!(
                "exit status {}",
                st.code().unwrap_or(-1)
            ))),
            Ok(None) => None,
            Err(e) => Some(Outcome::Down(e.to_string())),
        }
    }

    /// Advances the probe on readiness; Some when it has its result.
    pub fn ready(&mut self, reg: &Registry, token: Token, host: &str) -> Option<Outcome> {
        let stage = self.stage.take()?;
        match stage {
            Stage::Connecting(mut s) => {
                if let Ok(Some(e)) | Err(e) = s.take_error() {
                    return Some(Outcome::Down(describe(&e)));
                }
                match s.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotConnected => {
                        self.stage = Some(Stage::Connecting(s));
                        return None;
                    }
                    Err(e) => return Some(Outcome::Down(describe(&e))),
                }
                let CheckKind::Http { path, host: h, .. } = &self.kind else {
                    return Some(Outcome::Up);
                };
                let req = format!(
                    "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: gateway-health\r\n\
                     Connection: close\r\n\r\n",
                    h.as_deref().unwrap_or(host)
                );
                if reg
                    .reregister(&mut s, token, Interest::WRITABLE | Interest::READABLE)
                    .is_err()
                {
                    return Some(Outcome::Down("poll".into()));
                }
                self.stage = Some(Stage::HttpSend(s, req.into_bytes(), 0));
                self.ready(reg, token, host)
            }
            Stage::HttpSend(mut s, req, mut sent) => {
                while sent < req.len() {
                    match s.write(&req[sent..]) {
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            self.stage = Some(Stage::HttpSend(s, req, sent));
                            return None;
                        }
                        Err(e) => return Some(Outcome::Down(describe(&e))),
                    }
                }
                self.stage = Some(Stage::HttpRead(s, Vec::new()));
                self.ready(reg, token, host)
            }
            Stage::HttpRead(mut s, mut buf) => {
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk) {
                        Ok(0) => return Some(self.http_verdict(&buf)),
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            if buf.len() >= HTTP_READ_MAX {
                                return Some(self.http_verdict(&buf));
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            self.stage = Some(Stage::HttpRead(s, buf));
                            return None;
                        }
                        Err(e) => return Some(Outcome::Down(describe(&e))),
                    }
                }
            }
            Stage::Udp(s) => {
                let mut buf = [0u8; 2048];
                match s.recv(&mut buf) {
                    Ok(n) => {
                        let CheckKind::Udp { expect, .. } = &self.kind else {
                            return Some(Outcome::Up);
                        };
                        let reply = String::from_utf8_lossy(&buf[..n]);
                        match expect {
                            Some(x) if !reply.contains(x.as_str()) => {
                                Some(Outcome::Down(format!("reply without {x:?}")))
                            }
                            _ => Some(Outcome::Up),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.stage = Some(Stage::Udp(s));
                        None
                    }
                    // ICMP port unreachable comes back as ECONNREFUSED on a connected socket.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                        Some(Outcome::Down("port unreachable".into()))
                    }
                    Err(e) => Some(Outcome::Down(describe(&e))),
                }
            }
            Stage::Exec(c) => {
                self.stage = Some(Stage::Exec(c));
                None
            }
        }
    }

    fn http_verdict(&self, buf: &[u8]) -> Outcome {
        let CheckKind::Http { status, body, .. } = &self.kind else {
            return Outcome::Up;
        };
        let text = String::from_utf8_lossy(buf);
        let code = text
            .split_whitespace()
            .nth(1)
            .filter(|_| text.starts_with("HTTP/"))
            .and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Outcome::Down("not an HTTP answer".into());
        };
        if !status.contains(&code) {
            return Outcome::Down(format!("HTTP {code}"));
        }
        if let Some(b) = body {
            let content = text.split_once("\r\n\r\n").map_or("", |x| x.1);
            if !content.contains(b.as_str()) {
                return Outcome::Down(format!("HTTP {code} without {b:?}"));
            }
        }
        Outcome::Up
    }

    /// Ends the probe (a deadline passed, or the target went away): a program is killed.
    pub fn cancel(mut self, reg: &Registry) {
        match self.stage.take() {
            Some(Stage::Connecting(mut s))
            | Some(Stage::HttpSend(mut s, ..))
            | Some(Stage::HttpRead(mut s, _)) => {
                let _ = reg.deregister(&mut s);
            }
            Some(Stage::Udp(mut s)) => {
                let _ = reg.deregister(&mut s);
            }
            Some(Stage::Exec(mut c)) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            None => {}
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(Stage::Exec(c)) = &mut self.stage {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
