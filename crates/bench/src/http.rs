//! The HTTP side of the `bridge` scenario, on plain tokio sockets like the MQTT client: a
//! keep-alive HTTP/1.1 connection that sends one POST at a time and reads its answer, and the
//! opening of a live stream (Server-Sent Events, or a WebSocket through `tokio-tungstenite`).
//!
//! A stream is requested as HTTP/1.0, so the server sends its body as it is, delimited by the
//! end of the connection rather than chunked, and the reader only has to split events.

use base64::Engine as _;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::client::SETUP_TIMEOUT;
use crate::error::BenchError;
use crate::verify::HttpTarget;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Free space kept in a read buffer before each read.
const READ_SPACE: usize = 16 * 1024;

/// The `Authorization` header value of an application key `apiKey:apiSecret`.
pub fn basic(target: &HttpTarget) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&target.api_key))
}

/// One keep-alive HTTP/1.1 connection that sends requests one at a time.
#[derive(Debug)]
pub struct HttpConn {
    stream: TcpStream,
    input: BytesMut,
    request: Vec<u8>,
    host: String,
    authorization: String,
}

impl HttpConn {
    /// Connect to the API of `target`.
    pub async fn connect(target: &HttpTarget) -> Result<HttpConn, BenchError> {
        let stream = tokio::time::timeout(SETUP_TIMEOUT, TcpStream::connect(target.addr))
            .await
            .map_err(|_| BenchError::Timeout(SETUP_TIMEOUT, "HTTP connect"))?
            .map_err(|e| BenchError::io("connecting to the HTTP API", e))?;
        stream.set_nodelay(true).map_err(|e| BenchError::io("setting TCP_NODELAY", e))?;
        Ok(HttpConn {
            stream,
            input: BytesMut::with_capacity(READ_SPACE),
            request: Vec::with_capacity(512),
            host: target.addr.to_string(),
            authorization: basic(target),
        })
    }

    /// POST a JSON `body` to `path` and read the answer; its status code.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<u16> {
        self.request.clear();
        self.request.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                self.host,
                self.authorization,
                body.len()
            )
            .as_bytes(),
        );
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).await?;
        let head = read_head(&mut self.stream, &mut self.input).await?;
        if head.chunked {
            return Err(invalid("a chunked answer to a POST"));
        }
        while self.input.len() < head.content_length {
            self.read().await?;
        }
        self.input.advance(head.content_length);
        if head.close {
            return Err(invalid("the server closes the connection"));
        }
        Ok(head.status)
    }

    async fn read(&mut self) -> std::io::Result<()> {
        read_some(&mut self.stream, &mut self.input).await
    }
}

/// A live stream whose head was read: the body follows on `stream`, and what already arrived
/// of it is in `input`.
#[derive(Debug)]
pub struct OpenStream {
    pub stream: TcpStream,
    pub input: BytesMut,
}

/// `GET path` with `Accept: accept` as HTTP/1.0; the stream once the server answered 200.
pub async fn open_stream(target: &HttpTarget, path: &str, accept: &str) -> Result<OpenStream, BenchError> {
    let opened = async {
        let mut stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: {}\r\nAccept: {accept}\r\n\r\n",
            target.addr,
            basic(target)
        );
        stream.write_all(request.as_bytes()).await?;
        let mut input = BytesMut::with_capacity(READ_SPACE);
        let head = read_head(&mut stream, &mut input).await?;
        Ok::<_, std::io::Error>((head.status, OpenStream { stream, input }))
    };
    let (status, open) = tokio::time::timeout(SETUP_TIMEOUT, opened)
        .await
        .map_err(|_| BenchError::Timeout(SETUP_TIMEOUT, "opening a stream"))?
        .map_err(|e| BenchError::io("opening a stream", e))?;
    if status != 200 {
        return Err(BenchError::Options(format!("GET {path} answered {status}: check --api-key and --tenant")));
    }
    Ok(open)
}

/// Open the WebSocket at `path` (`ws://`), authenticated with the application key.
pub async fn open_websocket(target: &HttpTarget, path: &str) -> Result<WebSocketStream<TcpStream>, BenchError> {
    let refused = |e: &dyn std::fmt::Display| BenchError::Options(format!("WebSocket {path}: {e}"));
    let mut request = format!("ws://{}{path}", target.addr).into_client_request().map_err(|e| refused(&e))?;
    let authorization = HeaderValue::from_str(&basic(target)).map_err(|e| refused(&e))?;
    request.headers_mut().insert("authorization", authorization);
    let handshake = async {
        let stream = TcpStream::connect(target.addr).await.map_err(|e| BenchError::io("connecting a WebSocket", e))?;
        stream.set_nodelay(true).map_err(|e| BenchError::io("setting TCP_NODELAY", e))?;
        tokio_tungstenite::client_async(request, stream).await.map_err(|e| refused(&e))
    };
    let (socket, _) = tokio::time::timeout(SETUP_TIMEOUT, handshake)
        .await
        .map_err(|_| BenchError::Timeout(SETUP_TIMEOUT, "opening a WebSocket"))??;
    Ok(socket)
}

/// What matters of a response head.
#[derive(Debug)]
struct Head {
    status: u16,
    content_length: usize,
    chunked: bool,
    close: bool,
}

/// Read a response head from `stream` (through `input`) and consume it; the body stays.
async fn read_head(stream: &mut TcpStream, input: &mut BytesMut) -> std::io::Result<Head> {
    loop {
        if let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_head(&input[..end])?;
            input.advance(end + 4);
            return Ok(head);
        }
        if input.len() > MAX_HEAD {
            return Err(invalid("a response head over 64 KiB"));
        }
        read_some(stream, input).await?;
    }
}

async fn read_some(stream: &mut TcpStream, input: &mut BytesMut) -> std::io::Result<()> {
    if input.capacity() - input.len() < READ_SPACE / 4 {
        input.reserve(READ_SPACE);
    }
    match stream.read_buf(input).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(()),
    }
}

fn parse_head(head: &[u8]) -> std::io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("a response head that is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("a response without a status line"))?;
    let mut head = Head { status, content_length: 0, chunked: false, close: status_line.starts_with("HTTP/1.0") };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().map_err(|_| invalid("a bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(head)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected HTTP response: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_read() {
        let h = parse_head(b"HTTP/1.1 201 Created\r\ncontent-length: 42\r\nConnection: keep-alive").unwrap();
        assert_eq!((h.status, h.content_length, h.chunked, h.close), (201, 42, false, false));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nconnection: close").unwrap();
        assert!(h.chunked && h.close);
        assert!(parse_head(b"HTTP/1.0 200 OK").unwrap().close);
        assert!(parse_head(b"garbage").is_err());
    }
}
