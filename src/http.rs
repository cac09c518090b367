//! HTTP helpers shared by every client: bounded bodies and error descriptions.

use std::error::Error as _;

#[derive(Debug)]
pub enum ReadError {
    TooLarge(usize),
    Transport(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(max) => write!(
                f,
                "response body is larger than {max} bytes; refusing to read it"
            ),
            ReadError::Transport(e) => write!(f, "reading the response failed: {e}"),
        }
    }
}

/// Reads a body, stopping as soon as it passes `max` bytes, so a misbehaving endpoint cannot
/// exhaust memory whatever its Content-Length says.
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(describe(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn is_connection_refused(e: &reqwest::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// The innermost cause, which is the one an operator can act on ("certificate has expired",
/// "connection reset"), on one line. URLs never carry secrets here: tokens travel in headers.
pub fn describe(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last.replace('\n', " ")
}
