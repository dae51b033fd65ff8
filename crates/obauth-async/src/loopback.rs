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
//! task per connection with 10 s to send its request and 10 s to take the answer, at most
//! 32 at a time (the others wait to be accepted). Dropping the `wait` future stops waiting
//! (a callback that comes later is handed to the next `wait`); [`Canceller::cancel`] ends
//! the wait for good; dropping the listener frees the port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use obauth_core::truelayer::auth_dialog::AuthorizationCallback;
pub use obauth_core::truelayer::loopback::ReceiveError;
use obauth_core::truelayer::loopback::{
    CONNECTION_TIMEOUT, Event, LoopbackRedirect, MAX_CONNECTIONS, RedirectReceiver, Refusals,
    RequestReader, encode_response,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

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
    refused: Arc<Mutex<Refusals>>,
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
                Err(error) if LoopbackRedirect::bind_failure_is_fatal(index, &error) => {
                    return Err(ReceiveError::bind(addr, error));
                }
                // `[::1]` beside `127.0.0.1`, on a host without IPv6.
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
        let refused = Arc::new(Mutex::new(Refusals::default()));
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let accepting = listeners
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept(
                    listener,
                    Arc::clone(&receiver),
                    sender.clone(),
                    Arc::clone(&refused),
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
            refused,
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

    /// The callbacks refused so far while waiting (the first 64): those that could not be
    /// this sign-in's (a `state` that does not match, a repeated parameter). The wait went
    /// on after each.
    pub fn refused(&self) -> Vec<obauth_core::CallbackError> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .all()
            .to_vec()
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
    refused: Arc<Mutex<Refusals>>,
    slots: Arc<Semaphore>,
) {
    loop {
        // All slots busy: the next connection waits to be accepted until one frees.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: no busy loop while it lasts.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let receiver = Arc::clone(&receiver);
        let sender = sender.clone();
        let refused = Arc::clone(&refused);
        tokio::spawn(async move {
            connection(stream, &receiver, &sender, &refused).await;
            drop(slot);
        });
    }
}

/// Reads one request, answers it, closes the connection.
async fn connection(
    mut stream: TcpStream,
    receiver: &Mutex<RedirectReceiver>,
    sender: &mpsc::UnboundedSender<Message>,
    refused: &Mutex<Refusals>,
) {
    // One deadline for the whole request, not one per read.
    let deadline = tokio::time::Instant::now() + CONNECTION_TIMEOUT;
    let mut reader = RequestReader::new();
    let mut buffer = [0u8; 4096];
    let mut event = None;
    let response = loop {
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) => match reader.finish() {
                Ok(()) => return,
                Err(error) => break error.response(),
            },
            Ok(Ok(read)) => read,
            // A silent connection (a browser's speculative one) ends here.
            Ok(Err(_)) | Err(_) => return,
        };
        match reader.push(&buffer[..read]) {
            Ok(None) => continue,
            Ok(Some(request)) => {
                let reply = receiver
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .respond(&request);
                event = Some(reply.event);
                break reply.response;
            }
            Err(error) => break error.response(),
        }
    };
    // The page first, then the outcome: a program that ends as soon as it has the code
    // must not cut the browser off before its landing page.
    let written = async {
        let _ = stream.write_all(&encode_response(&response)).await;
        let _ = stream.shutdown().await;
    };
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, written).await;
    // Handed over whether or not the page could be written: the receiver has decided.
    match event {
        Some(Event::Received(outcome)) => {
            let _ = sender.send(Message::Outcome(outcome));
        }
        Some(event) => refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(&event),
        None => {}
    }
}
