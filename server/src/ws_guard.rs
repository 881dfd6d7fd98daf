//! WebSocket upgrades whose incoming frames are bounded before they are buffered.
//!
//! actix-ws reads whatever the connection has into one buffer before it parses a
//! frame, so a client that declares a huge frame and sends fast makes the server hold
//! it all. Here the request's bytes pass through a [`FrameGuard`] first: a frame
//! longer than the limit is refused at its header, nothing more is read from the
//! connection, and the session is told so it can close. Reading is also done in
//! bursts of at most [`BURST`] bytes before the parser runs, so many small frames
//! sent at once do not pile up either.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use casecast_signaling::ws_frames::{FrameError, FrameGuard};
use futures_util::Stream;

/// Most bytes read from the connection before the frames in them are parsed.
pub const BURST: usize = 256 * 1024;

/// The limit of one connection, changed while it lives, and what tripped it.
#[derive(Clone)]
pub struct Limit {
    max_frame: Arc<AtomicUsize>,
    tripped: Arc<OnceLock<FrameError>>,
}

impl Limit {
    /// Frames of at most `max_frame` bytes from now on.
    pub fn set(&self, max_frame: usize) {
        self.max_frame.store(max_frame, Ordering::Relaxed);
    }

    /// Why the connection was refused, if it was.
    pub fn tripped(&self) -> Option<&FrameError> {
        self.tripped.get()
    }
}

/// The request's bytes, checked frame by frame.
struct Guarded {
    inner: actix_web::dev::Payload,
    guard: FrameGuard,
    limit: Limit,
    read: usize,
    done: bool,
}

impl Stream for Guarded {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.read >= BURST {
            // Let the parser run on what it has before reading more.
            this.read = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Err(e) = this.guard.inspect(&bytes, this.limit.max_frame.load(Ordering::Relaxed)) {
                    this.done = true;
                    let _ = this.limit.tripped.set(e);
                    return Poll::Ready(Some(Err(actix_web::error::PayloadError::Overflow)));
                }
                this.read += bytes.len();
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Pending => {
                this.read = 0;
                Poll::Pending
            }
            other => other,
        }
    }
}

/// Upgrades to a WebSocket whose frames may be at most `max_frame` bytes (changed
/// later through the answered [`Limit`]).
pub async fn handle(
    req: &HttpRequest,
    body: web::Payload,
    max_frame: usize,
) -> actix_web::Result<(HttpResponse, actix_ws::Session, actix_ws::MessageStream, Limit)> {
    let limit = Limit { max_frame: Arc::new(AtomicUsize::new(max_frame)), tripped: Arc::default() };
    let guarded = Guarded { inner: body.into_inner(), guard: FrameGuard::new(), limit: limit.clone(), read: 0, done: false };
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::error::PayloadError>>>> = Box::pin(guarded);
    let mut payload = actix_web::dev::Payload::from(boxed);
    let body = web::Payload::from_request(req, &mut payload).await?;
    let (resp, session, stream) = actix_ws::handle(req, body)?;
    Ok((resp, session, stream, limit))
}
