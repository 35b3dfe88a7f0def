//! The smallest HTTP/1.1 server Prometheus needs: `GET /metrics` (and `HEAD`), one request per
//! connection (`Connection: close`), served one connection at a time on a control thread.
//!
//! Scrapes come every few seconds from a handful of Prometheus servers, so one thread is plenty; a
//! client is bounded in time ([`IO_TIMEOUT`]) and in request size ([`MAX_REQUEST`]), so a slow or
//! hostile one delays the next scrape by at most that and can never reach a worker. Hand-written
//! because it is this small and off the packet path (a server crate would bring an async runtime).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A request head must arrive, and the answer leave, within this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request head read (Prometheus sends a few hundred bytes).
pub const MAX_REQUEST: usize = 8192;
/// How often the accept loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// The text format's media type (Prometheus exposition format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Serves `listener` until `stop` is set; `metrics` renders one scrape.
pub fn serve(listener: TcpListener, stop: &AtomicBool, metrics: impl Fn() -> String) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!("metrics listener: {e}");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, &metrics) {
                    tracing::debug!("metrics client: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET` (body) or `HEAD` (no body) of `/metrics`.
    Metrics {
        head: bool,
    },
    /// `/`: a page pointing at `/metrics`, as exporters do.
    Index {
        head: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Parses a request line (RFC 9112 section 3: `method SP request-target SP HTTP-version`).
pub fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|&b| b == b'\n').next() else {
        return Route::BadRequest;
    };
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    // Prometheus may add a query string; the path alone decides.
    match target.split('?').next().unwrap_or("") {
        "/metrics" => Route::Metrics { head },
        "/" => Route::Index { head },
        _ => Route::NotFound,
    }
}

fn answer(mut stream: TcpStream, metrics: &impl Fn() -> String) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read until the blank line that ends the head, the size limit or the deadline.
    let complete = loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if buf.len() >= MAX_REQUEST || Instant::now() >= deadline {
            break false;
        }
        match stream.read(&mut chunk)? {
            0 => break false,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let r = if complete {
        route(&buf)
    } else {
        Route::BadRequest
    };
    let (status, ctype, body, head) = match r {
        Route::Metrics { head } => ("200 OK", CONTENT_TYPE, metrics(), head),
        Route::Index { head } => (
            "200 OK",
            "text/html; charset=utf-8",
            "<html><head><title>gateway</title></head><body><h1>gateway</h1>\
             <p><a href=\"/metrics\">Metrics</a></p></body></html>\n"
                .to_string(),
            head,
        ),
        Route::NotFound => ("404 Not Found", "text/plain", "not found\n".into(), false),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".into(),
            false,
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "text/plain",
            "bad request\n".into(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            r("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head: true }
        );
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::Index { head: false });
        assert_eq!(r("GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(r("GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("\u{0}\u{1}"), Route::BadRequest);
    }

    #[test]
    fn a_scrape_over_tcp_gets_the_text_and_a_slow_client_is_cut_off() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| serve(l, &stop, || "up 1\n".to_string()));
            // A client that sends half a request and stalls does not block the next scrape for
            // longer than IO_TIMEOUT.
            let mut stalled = TcpStream::connect(addr).unwrap();
            stalled.write_all(b"GET /metr").unwrap();
            let t = Instant::now();
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).unwrap();
            assert!(t.elapsed() < IO_TIMEOUT * 2, "{:?}", t.elapsed());
            assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
            assert!(
                got.contains("Content-Type: text/plain; version=0.0.4"),
                "{got}"
            );
            assert!(got.ends_with("\r\n\r\nup 1\n"), "{got}");
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).unwrap();
            assert!(got.starts_with("HTTP/1.1 404"), "{got}");
            drop(stalled);
            stop.store(true, Ordering::Relaxed);
        });
    }
}
