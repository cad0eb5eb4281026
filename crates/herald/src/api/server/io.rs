//! The byte stream under one HTTP connection.
//!
//! [`ConnectionIo`] replays the bytes read to choose the protocol, closes
//! the connection once nothing has moved for the idle timeout, and gives
//! hyper's own error responses (sent without a body for a request it cannot
//! parse) the JSON error body every other error has.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::api::error::ApiError;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the protocol is known: the whole HTTP/2 preface, or a byte
/// that departs from it (HTTP/1.x). Empty at end of stream.
pub async fn read_protocol_prefix(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; 24];
    while prefix.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&prefix) {
        let wanted = H2_PREFACE.len() - prefix.len();
        let read = stream.read(&mut chunk[..wanted]).await?;
        if read == 0 {
            break;
        }
        prefix.extend_from_slice(&chunk[..read]);
    }
    Ok(prefix)
}

pub struct ConnectionIo {
    stream: TcpStream,
    /// Bytes already read from `stream` that hyper has not seen yet.
    replay: Vec<u8>,
    replayed: usize,
    idle_timeout: Duration,
    last_activity: Instant,
    idle: Pin<Box<Sleep>>,
    /// A rewritten error response still being written, and the length of
    /// hyper's original to report once it is out.
    rewrite: Option<(Vec<u8>, usize, usize)>,
}

impl ConnectionIo {
    pub fn new(stream: TcpStream, replay: Vec<u8>, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            stream,
            replay,
            replayed: 0,
            idle_timeout,
            last_activity: now,
            idle: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            rewrite: None,
        }
    }

    /// Called when the stream is not ready: fails once nothing has moved
    /// for the idle timeout (and registers a wake-up for that moment).
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let deadline = self.last_activity + self.idle_timeout;
        if self.idle.deadline() != deadline {
            self.idle.as_mut().reset(deadline);
        }
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection was idle too long",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for ConnectionIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                this.check_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for ConnectionIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none()
            && let Some(replacement) = json_error_for_automatic_response(buf)
        {
            this.rewrite = Some((replacement, 0, buf.len()));
        }
        if let Some((bytes, written, original)) = &mut this.rewrite {
            while *written < bytes.len() {
                match Pin::new(&mut this.stream).poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        *written += n;
                        this.last_activity = Instant::now();
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => {
                        this.check_idle(cx)?;
                        return Poll::Pending;
                    }
                }
            }
            let original = *original;
            this.rewrite = None;
            return Poll::Ready(Ok(original));
        }
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                this.check_idle(cx)?;
                Poll::Pending
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// hyper answers a request it cannot parse itself, with a bare head and no
/// body: `400` (malformed), `414` (URI too long) or `431` (headers too
/// large). Such a head is recognised by its status and by having no
/// `content-type`, which every response of the API has; the replacement
/// carries the JSON error and closes the connection, as hyper does.
fn json_error_for_automatic_response(buf: &[u8]) -> Option<Vec<u8>> {
    let head = buf.strip_suffix(b"\r\n\r\n")?;
    let status_line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let status_line = std::str::from_utf8(&head[..status_line_end]).ok()?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
        .get(..3)?;
    let headers = std::str::from_utf8(&head[status_line_end..]).ok()?.to_ascii_lowercase();
    if headers.contains("\r\ncontent-type:") || headers.contains("\r\n\r\n") {
        return None;
    }
    let error = match status {
        "400" => {
            ApiError::MalformedRequest("the request is not valid HTTP/1.1 (method, URI, header or version)".into())
        }
        "414" => ApiError::UriTooLong("the request URI is too long".into()),
        "431" => ApiError::HeadersTooLarge("the request headers are too large or too many".into()),
        _ => return None,
    };
    let body = error.body();
    let reason = error.status().canonical_reason().unwrap_or("Error");
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_bare_error_heads_are_rewritten() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let rewritten = String::from_utf8(json_error_for_automatic_response(bare).expect("rewritten")).expect("utf-8");
        assert!(rewritten.starts_with("HTTP/1.1 431 "), "{rewritten}");
        assert!(rewritten.contains(r#""code":"headers_too_large""#), "{rewritten}");
        assert!(rewritten.contains("content-type: application/json"), "{rewritten}");
        let api = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(json_error_for_automatic_response(api).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(json_error_for_automatic_response(ok).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert!(json_error_for_automatic_response(with_body).is_none());
    }
}
