//! What the benchmarks share: a token endpoint whose own cost is tiny and the same for
//! every client measured against it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// The token answer every request gets. The access token is a JWT of about 1 KB, the size
/// of a real TrueLayer access token (a short placeholder would hide the per-byte costs of
/// copying and zeroing a token on every read).
pub const TOKEN_JSON: &str = concat!(
    r#"{"access_token":"eyJhbGciOiJSUzI1NiIsImtpZCI6IjE0RUI4QTNCNjgzN0Y2MTU4RUQ3MjE0MTM2M0UzNjk4MEI2QTREMzkiLCJ0eXAiOiJhdCtqd3QiLCJ4NXQiOiJGT3VLTzJnMzloV08xeUZCTmo0Mm1BdHFUVGsifQ.eyJpc3MiOiJodHRwczovL2F1dGgudHJ1ZWxheWVyLmNvbSIsIm5iZiI6MTc5NTI3NjgwMCwiaWF0IjoxNzk1Mjc2ODAwLCJleHAiOjE3OTUyODA0MDAsImF1ZCI6Imh0dHBzOi8vYXV0aC50cnVlbGF5ZXIuY29tL2FwaSIsInNjb3BlIjpbInBheW1lbnRzIiwicGF5ZGlyZWN0IiwibWFuZGF0ZXMiLCJyZWN1cnJpbmdfcGF5bWVudHM6c3dlZXBpbmciXSwiYW1yIjpbImNsaWVudF9jcmVkZW50aWFscyJdLCJjbGllbnRfaWQiOiJzYW5kYm94LW9iYXV0aC1iZW5jaC01ZjJjMWUiLCJqdGkiOiI5RjZBMUMyQjdFNEQzQTVCOEMwRDFFMkYzQTRCNUM2RCIsInRsOmVudmlyb25tZW50Ijoic2FuZGJveCIsInRsOmNsaWVudF90eXBlIjoibWVyY2hhbnQiLCJ0bDpwcm92aWRlcl9pZHMiOltdfQ.ruUdMVFh9OkVOGjozMhOKTOx330xZOLltmVaDxo3rIioZrtLBXrtxNd9TvHxuNgIukVVQDkA3Yfrg8BH0p4v667lHTFRYfTpFTho6MzITikzsd99MWTi5bZlWg8aN6yIqGa7SwV67cTXfU7x8bjYCLpFVUA5AN2H64PAR9KeL-uu5R0xUWH06RU4aOjMyE4pM7HffTFk4uW2ZVoPGjesiKhmu0sFeu3E131O8fG42Ai6RVVAOQDdh-uDwEfSni_rruUdMVFh9OkVOGjozMhOKTOx330xZOLltmVaDxo3rIioZrtLBXrtxNd9TvHxuNgIukVVQDkA3Yfrg8BH0p4v6w","#,
    r#""expires_in":3600,"token_type":"Bearer","scope":"payments"}"#
);

static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// How many requests the token server has answered.
pub fn requests() -> usize {
    REQUESTS.load(Ordering::Relaxed)
}

/// Starts a keep-alive HTTP/1.1 server on 127.0.0.1 that reads each request body and
/// answers [`TOKEN_JSON`]; it runs on its own thread until the process ends.
pub fn start_token_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service =
                        service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                            let _ = request.into_body().collect().await;
                            REQUESTS.fetch_add(1, Ordering::Relaxed);
                            let mut response = http::Response::new(Full::new(Bytes::from_static(
                                TOKEN_JSON.as_bytes(),
                            )));
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(response)
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}
