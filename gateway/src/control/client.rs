//! The client side of the admin protocol: connect, send one request, read one response.

use super::proto::{self, Line, Op, Request, Response, MAX_RESPONSE, VERSION};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket a client uses: `--socket`, else `$GATEWAY_SOCKET`, else /run/gateway/gateway.sock (the
/// default file prefix's).
pub fn default_socket() -> PathBuf {
    std::env::var_os("GATEWAY_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/gateway/gateway.sock"))
}

/// Why a request got no answer from the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {err}{hint}")]
    Connect {
        path: String,
        err: std::io::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("bad response from the daemon: {0}")]
    Protocol(String),
}

/// Sends a streamed request (`ConnFilter::stream`) and hands every answer line to `each` until the
/// last (`more` not true), which is returned. `timeout` bounds the wait for each line.
pub fn request_stream(
    path: &Path,
    op: Op,
    timeout: Duration,
    mut each: impl FnMut(Response) -> Result<(), ClientError>,
) -> Result<Response, ClientError> {
    let (s, mut r) = send(path, op, timeout)?;
    drop(s);
    loop {
        let resp = read_response(&mut r)?;
        if resp.more != Some(true) {
            return Ok(resp);
        }
        each(resp)?;
    }
}

/// A streamed answer read a line at a time, for a client that decides itself when to stop
/// (`gwctl capture`). Dropping it closes the connection, which ends the daemon's side.
pub struct Stream {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Stream {
    /// Sends `op`; `timeout` bounds the wait for each line.
    pub fn open(path: &Path, op: Op, timeout: Duration) -> Result<Stream, ClientError> {
        let (w, r) = send(path, op, timeout)?;
        Ok(Stream { w, r })
    }

    /// Closes the writing half: the daemon takes it as "stop" and sends its last line.
    pub fn finish(&self) -> std::io::Result<()> {
        self.w.shutdown(std::net::Shutdown::Write)
    }

    /// The next line of the answer.
    pub fn next_response(&mut self) -> Result<Response, ClientError> {
        read_response(&mut self.r)
    }
}

fn send(
    path: &Path,
    op: Op,
    timeout: Duration,
) -> Result<(UnixStream, BufReader<UnixStream>), ClientError> {
    let s = UnixStream::connect(path).map_err(|err| ClientError::Connect {
        path: path.display().to_string(),
        hint: match err.kind() {
            std::io::ErrorKind::PermissionDenied => " (the admin socket is for root or its group)",
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                " (is the gateway running?)"
            }
            _ => "",
        },
        err,
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut w = s.try_clone()?;
    proto::write_line(&mut w, &Request { v: VERSION, op })?;
    Ok((w, BufReader::new(s)))
}

/// Sends one request and returns the daemon's response (which may itself be an error).
pub fn request(path: &Path, op: Op, timeout: Duration) -> Result<Response, ClientError> {
    let (_w, mut r) = send(path, op, timeout)?;
    read_response(&mut r)
}

fn read_response(r: &mut BufReader<UnixStream>) -> Result<Response, ClientError> {
    match proto::read_line(r, MAX_RESPONSE)? {
        Line::Full(l) => {
            serde_json::from_slice(&l).map_err(|e| ClientError::Protocol(e.to_string()))
        }
        other => Err(ClientError::Protocol(format!("{other:?}"))),
    }
}
