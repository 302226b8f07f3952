//! A parser fed as a driver feeds it, for the tests and the fuzz targets: pieces in turn, every request taken
//! after each, until an error or a WebSocket upgrade (what follows one is not HTTP).
use super::{HttpError, Request, RequestParser};

/// Everything a parser made of some bytes.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub requests: Vec<Request>,
    pub error: Option<HttpError>,
    pub idle: bool,
    /// What `take_buffered` gave at the end: the bytes after the last request.
    pub buffered: Vec<u8>,
}

/// Feeds `pieces` in turn, taking every request after each one.
pub fn run<'a>(parser: &mut RequestParser, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let (mut requests, mut error, mut upgraded) = (Vec::new(), None, false);
    for piece in pieces {
        parser.feed(piece);
        while !upgraded && error.is_none() {
            match parser.next_request() {
                Ok(Some(r)) => {
                    upgraded = r.is_websocket_upgrade();
                    requests.push(r);
                }
                Ok(None) => break,
                Err(e) => error = Some(e),
            }
        }
    }
    let idle = parser.is_idle();
    Outcome {
        requests,
        error,
        idle,
        buffered: parser.take_buffered(),
    }
}
