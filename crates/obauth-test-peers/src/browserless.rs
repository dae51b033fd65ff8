//! One HTTP/1.1 request written by hand, as a browser would send it to a loopback redirect
//! listener: the tests choose the `Host`, the method and the body exactly.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What came back: the status and the body as text.
#[derive(Debug)]
pub struct PageAnswer {
    /// The status code.
    pub status: u16,
    /// The headers' lines, lower-cased names.
    pub head: String,
    /// The body.
    pub body: String,
}

/// Sends `method target` to `addr` with `Host: host` (and `body` as a form when given), reads
/// the answer to the end of the connection (10 s at most) and returns it.
pub fn loopback_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    host: &str,
    form: Option<&str>,
) -> std::io::Result<PageAnswer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: obauth-tests\r\n");
    if let Some(form) = form {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    Ok(PageAnswer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    })
}
