//! Reading the socket: small reads through the stack while a connection holds no read buffer,
//! and the linger after closing.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::{LINGER, MIN_READ};

/// Read into `rbuf`, or, when it is `unbuffered`, into the stack and then `rbuf`: an idle
/// connection holds no read buffer.
pub(super) fn poll_read<S>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    unbuffered: bool,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>>
where
    S: AsyncRead + Unpin,
{
    if !unbuffered {
        return pin!(stream.read_buf(rbuf)).poll(cx);
    }
    let mut stack = [0u8; MIN_READ];
    let mut buf = ReadBuf::new(&mut stack);
    Pin::new(stream).poll_read(cx, &mut buf).map_ok(|()| {
        rbuf.reserve(MIN_READ);
        rbuf.extend_from_slice(buf.filled());
        buf.filled().len()
    })
}

/// After our last packet and a write shutdown, read and discard what the client still sends
/// until it closes too (or briefly), so closing with unread input does not reset the connection
/// and destroy the DISCONNECT or CONNACK the client has not read yet.
pub(super) async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    let drain = async {
        let mut sink = [0u8; 512];
        while let Ok(n) = reader.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
