//! Receives the auth dialog's redirect on a loopback address (RFC 8252), on threads.
//!
//! ```no_run
//! use std::time::Duration;
//! use obauth_blocking::loopback::RedirectListener;
//! use obauth_blocking::core::random::new_state;
//! use obauth_blocking::core::OsRandom;
//!
//! let state = new_state(&mut OsRandom)?;
//! let mut listener = RedirectListener::bind("http://127.0.0.1:3000/callback", &state)?;
//! // Build the dialog link with `listener.redirect_uri()` and `state`, open it, then:
//! let callback = listener.wait(Duration::from_secs(300))?;
//! // Exchange `callback.code` (with the same redirect URI) while the listener still
//! // answers a reload of the landing page; drop it to free the port.
//! # let _ = callback; Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it answers is decided by [`obauth_core::truelayer::loopback`]; this module binds,
//! accepts, reads and writes. Each connection is read on its own thread and has 10 s to
//! send its request (a browser opens a few speculative connections that may never send
//! anything) and 10 s to take the answer; at most 32 are served at a time, the others wait
//! to be accepted.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use obauth_core::truelayer::auth_dialog::AuthorizationCallback;
pub use obauth_core::truelayer::loopback::ReceiveError;
use obauth_core::truelayer::loopback::{
    CONNECTION_TIMEOUT, Event, LoopbackRedirect, MAX_CONNECTIONS, RedirectReceiver, Refusals,
    RequestReader, encode_response,
};

enum Message {
    Outcome(Result<AuthorizationCallback, obauth_core::CallbackError>),
    Cancelled,
}

/// Ends a [`RedirectListener::wait`] in progress (or the next one) with
/// [`ReceiveError::Cancelled`]: for a Ctrl-C handler or another thread.
#[derive(Clone, Debug)]
pub struct Canceller(mpsc::Sender<Message>);

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
    messages: mpsc::Receiver<Message>,
    sender: mpsc::Sender<Message>,
    stop: Arc<AtomicBool>,
    accepting: Vec<(SocketAddr, JoinHandle<()>)>,
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
    pub fn bind(redirect_uri: &str, expected_state: &str) -> Result<Self, ReceiveError> {
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
            match TcpListener::bind(addr) {
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
        let (sender, messages) = mpsc::channel();
        let refused = Arc::new(Mutex::new(Refusals::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let accepting = listeners
            .into_iter()
            .zip(&local_addrs)
            .map(|(listener, addr)| {
                let serve = Serve {
                    receiver: Arc::clone(&receiver),
                    sender: sender.clone(),
                    refused: Arc::clone(&refused),
                    active: Arc::clone(&active),
                };
                let stop = Arc::clone(&stop);
                let handle = std::thread::Builder::new()
                    .name("obauth-loopback".into())
                    .spawn(move || accept(&listener, &stop, &serve))
                    .map_err(|e| ReceiveError::bind(*addr, e))?;
                Ok((*addr, handle))
            })
            .collect::<Result<Vec<_>, ReceiveError>>()?;
        Ok(Self {
            redirect_uri: redirect.redirect_uri(port),
            local_addrs,
            messages,
            sender,
            stop,
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
    pub fn wait(&mut self, timeout: Duration) -> Result<AuthorizationCallback, ReceiveError> {
        if self.taken {
            return Err(ReceiveError::AlreadyTaken);
        }
        let message = match self.messages.recv_timeout(timeout) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                return Err(ReceiveError::TimedOut { waited: timeout });
            }
            // The listener holds a sender itself: never disconnected while it lives.
            Err(RecvTimeoutError::Disconnected) => Message::Cancelled,
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
        self.stop.store(true, Ordering::SeqCst);
        for (addr, handle) in self.accepting.drain(..) {
            // Wakes the accepting thread, which sees `stop`, drops its listener (freeing
            // the port) and ends. If the wake-up fails the thread is left to end with the
            // process rather than blocking this drop.
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                let _ = handle.join();
            }
        }
    }
}

struct Serve {
    receiver: Arc<Mutex<RedirectReceiver>>,
    sender: mpsc::Sender<Message>,
    refused: Arc<Mutex<Refusals>>,
    active: Arc<AtomicUsize>,
}

fn accept(listener: &TcpListener, stop: &AtomicBool, serve: &Serve) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, say: no busy loop while it lasts.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        // All slots busy: this connection waits for one (each frees within the connection
        // limit); the ones after it wait in the kernel's backlog.
        while serve.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        serve.active.fetch_add(1, Ordering::SeqCst);
        let receiver = Arc::clone(&serve.receiver);
        let sender = serve.sender.clone();
        let refused = Arc::clone(&serve.refused);
        let active = Arc::clone(&serve.active);
        let spawned = std::thread::Builder::new()
            .name("obauth-loopback-conn".into())
            .spawn(move || {
                connection(stream, &receiver, &sender, &refused);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            serve.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads one request, answers it, closes the connection.
fn connection(
    mut stream: TcpStream,
    receiver: &Mutex<RedirectReceiver>,
    sender: &mpsc::Sender<Message>,
    refused: &Mutex<Refusals>,
) {
    // One deadline for the whole request, not one per read: a client that trickles a
    // byte at a time does not hold its slot longer.
    let deadline = std::time::Instant::now() + CONNECTION_TIMEOUT;
    let _ = stream.set_write_timeout(Some(CONNECTION_TIMEOUT));
    let mut reader = RequestReader::new();
    let mut buffer = [0u8; 4096];
    let mut event = None;
    let response = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        let read = match stream.read(&mut buffer) {
            Ok(0) => match reader.finish() {
                Ok(()) => return,
                Err(error) => break error.response(),
            },
            Ok(read) => read,
            // A silent connection (a browser's speculative one) ends here.
            Err(_) => return,
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
    let _ = stream.write_all(&encode_response(&response));
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
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
