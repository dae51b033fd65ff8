//! Receives the auth dialog's redirect on a loopback address (RFC 8252), on tokio.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use obauth_async::loopback::RedirectListener;
//! use obauth_async::core::random::new_state;
//! use obauth_async::core::OsRandom;
//!
//! let state = new_state(&mut OsRandom)?;
//! let mut listener = RedirectListener::bind("http://127.0.0.1:3000/callback", &state).await?;
//! // Build the dialog link with `listener.redirect_uri()` and `state`, open it, then:
//! let callback = listener.wait(Duration::from_secs(300)).await?;
//! // Exchange `callback.code` (with the same redirect URI) while the listener still
//! // answers a reload of the landing page; drop it to free the port.
//! # let _ = callback; Ok(()) }
//! ```
//!
//! The same API as `obauth-blocking`'s `loopback`, `async`. What it answers is decided by
//! [`obauth_core::truelayer::loopback`]; this module binds, accepts, reads and writes, one
//! task per connection with a 10 s limit, at most 32 at a time. Dropping the `wait` future
//! cancels the wait (as [`Canceller::cancel`] does); dropping the listener frees the port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use obauth_core::truelayer::auth_dialog::AuthorizationCallback;
pub use obauth_core::truelayer::loopback::ReceiveError;
use obauth_core::truelayer::loopback::{
    Event, LoopbackRedirect, RedirectReceiver, RequestReader, encode_response,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// How long one connection may take to send its request and take the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 32;

enum Message {
    Outcome(Result<AuthorizationCallback, obauth_core::CallbackError>),
    Cancelled,
}

/// Ends a [`RedirectListener::wait`] in progress (or the next one) with
/// [`ReceiveError::Cancelled`].
#[derive(Clone, Debug)]
pub struct Canceller(mpsc::UnboundedSender<Message>);

impl Canceller {
    /// Cancels the wait.
    pub fn cancel(&self) {
        let _ = self.0.send(Message::Cancelled);
    }
}

/// A loopback listener for one sign-in: bound when made, answering until dropped.
pub struct RedirectListener {
    redirect_uri: String,
    local_addrs: Vec<SocketAddr>,
    messages: mpsc::UnboundedReceiver<Message>,
    sender: mpsc::UnboundedSender<Message>,
    accepting: Vec<JoinHandle<()>>,
    taken: bool,
}

impl std::fmt::Debug for RedirectListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedirectListener")
            .field("redirect_uri", &self.redirect_uri)
            .field("local_addrs", &self.local_addrs)
            .finish_non_exhaustive()
    }
}

impl RedirectListener {
    /// Binds the loopback address of `redirect_uri` (any free port when it names none) and
    /// starts answering; the callback must carry `expected_state`.
    pub async fn bind(redirect_uri: &str, expected_state: &str) -> Result<Self, ReceiveError> {
        let redirect = LoopbackRedirect::parse(redirect_uri)?;
        let mut listeners: Vec<TcpListener> = Vec::new();
        for (index, wanted) in redirect.listen_addrs().into_iter().enumerate() {
            let addr = match listeners.first() {
                // Later addresses take the port the first one got.
                Some(first) => SocketAddr::new(
                    wanted.ip(),
                    first
                        .local_addr()
                        .map_err(|e| ReceiveError::bind(wanted, e))?
                        .port(),
                ),
                None => wanted,
            };
            match TcpListener::bind(addr).await {
                Ok(listener) => listeners.push(listener),
                Err(error) if index == 0 => return Err(ReceiveError::bind(addr, error)),
                // `[::1]` beside `127.0.0.1` for `localhost`: best-effort (no IPv6 here).
                Err(_) => {}
            }
        }
        let local_addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReceiveError::bind(redirect.listen_addrs()[0], e))?;
        let port = local_addrs[0].port();
        let receiver = Arc::new(Mutex::new(RedirectReceiver::new(
            &redirect,
            port,
            expected_state,
        )));
        let (sender, messages) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let accepting = listeners
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept(
                    listener,
                    Arc::clone(&receiver),
                    sender.clone(),
                    Arc::clone(&slots),
                ))
            })
            .collect();
        Ok(Self {
            redirect_uri: redirect.redirect_uri(port),
            local_addrs,
            messages,
            sender,
            accepting,
            taken: false,
        })
    }

    /// The redirect URI to put in the dialog link and the code exchange: the one given,
    /// with the port bound.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The addresses listened on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// A handle that cancels the wait from elsewhere.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.sender.clone())
    }

    /// Waits up to `timeout` for the callback. [`ReceiveError::TimedOut`] leaves the
    /// listener waiting (call again); any other outcome is final. The listener keeps
    /// answering (a reload of the landing page, a replay: refused) until dropped.
    pub async fn wait(&mut self, timeout: Duration) -> Result<AuthorizationCallback, ReceiveError> {
        if self.taken {
            return Err(ReceiveError::AlreadyTaken);
        }
        let message = match tokio::time::timeout(timeout, self.messages.recv()).await {
            Ok(Some(message)) => message,
            Err(_) => return Err(ReceiveError::TimedOut { waited: timeout }),
            // The listener holds a sender itself: never closed while it lives.
            Ok(None) => Message::Cancelled,
        };
        self.taken = true;
        match message {
            Message::Outcome(outcome) => outcome.map_err(ReceiveError::Callback),
            Message::Cancelled => Err(ReceiveError::Cancelled),
        }
    }
}

impl Drop for RedirectListener {
    fn drop(&mut self) {
        // The accepting tasks own the listeners: aborted, they drop them and free the port.
        for task in &self.accepting {
            task.abort();
        }
    }
}

async fn accept(
    listener: TcpListener,
    receiver: Arc<Mutex<RedirectReceiver>>,
    sender: mpsc::UnboundedSender<Message>,
    slots: Arc<Semaphore>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let receiver = Arc::clone(&receiver);
        let sender = sender.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(CONNECTION_TIMEOUT, connection(stream, &receiver, &sender))
                    .await;
            drop(slot);
        });
    }
}

/// Reads one request, answers it, closes the connection.
async fn connection(
    mut stream: TcpStream,
    receiver: &Mutex<RedirectReceiver>,
    sender: &mpsc::UnboundedSender<Message>,
) {
    let mut reader = RequestReader::new();
    let mut buffer = [0u8; 4096];
    let mut outcome = None;
    let response = loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) => match reader.finish() {
                Ok(()) => return,
                Err(error) => break error.response(),
            },
            Ok(read) => read,
            Err(_) => return,
        };
        match reader.push(&buffer[..read]) {
            Ok(None) => continue,
            Ok(Some(request)) => {
                let reply = receiver
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .respond(&request);
                if let Event::Received(received) = reply.event {
                    outcome = Some(received);
                }
                break reply.response;
            }
            Err(error) => break error.response(),
        }
    };
    // The page first, then the outcome: a program that ends as soon as it has the code
    // must not cut the browser off before its landing page.
    let _ = stream.write_all(&encode_response(&response)).await;
    let _ = stream.shutdown().await;
    if let Some(outcome) = outcome {
        let _ = sender.send(Message::Outcome(outcome));
    }
}
