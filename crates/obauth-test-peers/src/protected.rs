//! [`ProtectedResource`]: a small API on loopback that accepts only bearer tokens a check
//! says are valid, as a payments or data API would, for the middleware tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Check = dyn Fn(&str) -> bool + Send + Sync;

/// What the resource saw of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// The status it answered.
    pub status: u16,
}

struct Shared {
    check: Box<Check>,
    seen: Mutex<Vec<Seen>>,
    requests: AtomicUsize,
    stop: AtomicBool,
}

/// An HTTP/1.1 server on `127.0.0.1` and an ephemeral port. A request whose
/// `Authorization: Bearer T` passes the check gets `200` with the body echoed; any other
/// gets `401` with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1), or
/// without an `error` when no token was sent. `POST /forbidden` answers `403` whatever the
/// token. Each connection serves one request (`Connection: close`).
pub struct ProtectedResource {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ProtectedResource {
    /// Starts the resource; `check` says whether a token is valid (e.g. the mock's
    /// `access_token_valid`).
    pub fn start(check: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        let listener = listener().expect("a loopback port");
        let addr = listener.local_addr().expect("the port");
        let shared = Arc::new(Shared {
            check: Box::new(check),
            seen: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let serving = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if serving.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&serving);
                std::thread::spawn(move || {
                    let _ = serve(&shared, stream);
                });
            }
        });
        Self { addr, shared }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests arrived.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// What every request so far carried and got.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for ProtectedResource {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// `127.0.0.1:0` with a backlog of 4096: a thousand connections arriving at once would
/// overflow std's 128, and the overflow shows as connection resets.
fn listener() -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn serve(shared: &Shared, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (mut authorization, mut length, mut chunked) = (None, 0usize, false);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.to_owned()),
                "content-length" => length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let token = authorization
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "));
    let (status, extra, answer) = match token {
        _ if path == "/forbidden" => (403, String::new(), b"forbidden".to_vec()),
        Some(token) if (shared.check)(token) => (200, String::new(), body.clone()),
        Some(_) => (
            401,
            "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\", error_description=\"The access token expired\"\r\n".to_owned(),
            b"invalid token".to_vec(),
        ),
        None => (
            401,
            "WWW-Authenticate: Bearer realm=\"api\"\r\n".to_owned(),
            b"no token".to_vec(),
        ),
    };
    shared
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Seen {
            method,
            authorization,
            body,
            status,
        });
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        answer.len()
    )?;
    stream.write_all(&answer)?;
    stream.flush()?;
    // Close gently: our side first, then read what the client may still send, so that the
    // kernel never answers unread bytes with a reset.
    stream.shutdown(std::net::Shutdown::Write)?;
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    Ok(())
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}
