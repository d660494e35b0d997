//! A WebSocket seen as a byte stream, so MQTT over WebSocket runs the same connection task as
//! MQTT over TCP. Binary frames carry MQTT bytes (a packet may span frames or share one); a text
//! frame is a protocol violation and ends the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{Message, WebSocket};
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Byte-stream view of an upgraded WebSocket.
pub struct WsIo {
    ws: WebSocket,
    unread: Bytes,
}

impl WsIo {
    pub fn new(ws: WebSocket) -> WsIo {
        WsIo { ws, unread: Bytes::new() }
    }
}

fn broken(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e.to_string())
}

impl AsyncRead for WsIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.unread.is_empty() {
                let n = self.unread.len().min(buf.remaining());
                buf.put_slice(&self.unread[..n]);
                self.unread.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.unread = data,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket",
                    )));
                }
                Some(Err(e)) => return Poll::Ready(Err(broken(e))),
            }
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(broken)?;
        Pin::new(&mut self.ws).start_send(Message::Binary(Bytes::copy_from_slice(buf))).map_err(broken)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(broken)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(broken)
    }
}
