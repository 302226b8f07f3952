//! The sans-IO request parser: bytes in, [`Request`]s out.
use std::ops::ControlFlow;

/// Whether the parser goes on with its next phase, or stops with a request (or for more bytes).
type Step = ControlFlow<Option<Request>>;

use super::{is_tchar, latin1, HttpError, Method, Request, MAX_METHOD_BYTES};

/// A chunk-size line is a few hex digits; the bound only exists so that chunk extensions cannot grow the buffer.
const MAX_CHUNK_LINE_BYTES: usize = 4096;

#[derive(Debug)]
enum Phase {
    Head,
    /// Content-Length bytes, or the data of one chunk.
    Body {
        remaining: usize,
        chunked: bool,
    },
    ChunkSize,
    ChunkDataEnd,
    Trailers,
    Failed(HttpError),
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

pub struct RequestParser {
    buf: Vec<u8>,
    /// `buf[..start]` is consumed; every offset below is relative to `start`.
    start: usize,
    /// How far the current head, trailer section or chunk-size line has been searched for LF, so that each
    /// byte is scanned once however the peer splits its writes.
    scanned: usize,
    /// Where the field line being scanned begins (to spot the empty line ending a section).
    line_start: usize,
    phase: Phase,
    /// The request whose head is parsed and whose body is being read.
    pending: Option<Request>,
    expect_continue: bool,
    max_header_bytes: usize,
    max_body_bytes: usize,
}

impl RequestParser {
    pub fn new(max_header_bytes: usize, max_body_bytes: usize) -> Self {
        RequestParser {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            line_start: 0,
            phase: Phase::Head,
            pending: None,
            expect_continue: false,
            max_header_bytes,
            max_body_bytes,
        }
    }

    /// Applies from the next request head parsed.
    pub fn set_max_body_bytes(&mut self, n: usize) {
        self.max_body_bytes = n;
    }

    pub fn feed(&mut self, data: &[u8]) {
        if let Phase::Failed(_) = self.phase {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Ok(None): need more bytes. After Err the connection must be answered with err.status() and closed;
    /// further calls keep returning the same Err.
    pub fn next_request(&mut self) -> Result<Option<Request>, HttpError> {
        if let Phase::Failed(err) = &self.phase {
            return Err(err.clone());
        }
        self.advance().inspect_err(|err| {
            self.phase = Phase::Failed(err.clone());
            self.buf = Vec::new();
            self.start = 0;
            self.pending = None;
        })
    }

    /// Bytes buffered after the last returned request (after a WebSocket upgrade these are the first frame
    /// bytes). A request whose body was partly read is dropped: the caller has stopped speaking HTTP.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start.min(self.buf.len()));
        self.buf.clear();
        self.start = 0;
        if !matches!(self.phase, Phase::Failed(_)) {
            self.finish();
        }
        rest
    }

    /// No partial request buffered.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head) && self.start >= self.buf.len()
    }

    /// The request whose head is parsed and whose body is still awaited.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn pending_head(&self) -> Option<&Request> {
        self.pending.as_ref()
    }

    /// True once after a head with "Expect: 100-continue" whose body has not arrived yet: the caller should
    /// write "HTTP/1.1 100 Continue" (curl waits a second for it before sending large bodies).
    pub fn take_expect_continue(&mut self) -> bool {
        std::mem::take(&mut self.expect_continue)
    }

    fn advance(&mut self) -> Result<Option<Request>, HttpError> {
        loop {
            let step = match self.phase {
                Phase::Head => self.head()?,
                Phase::Body { remaining, chunked } => self.body(remaining, chunked),
                Phase::ChunkSize => self.chunk_size()?,
                Phase::ChunkDataEnd => self.chunk_data_end()?,
                Phase::Trailers => match self.section_end()? {
                    None => Step::Break(None),
                    Some(end) => {
                        self.consume(end);
                        Step::Break(self.finish())
                    }
                },
                Phase::Failed(ref err) => return Err(err.clone()),
            };
            if let Step::Break(request) = step {
                return Ok(request);
            }
        }
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn head(&mut self) -> Result<Step, HttpError> {
        // Fail fast on TLS or other binary protocols instead of waiting for a line end.
        if (self.available().first()).is_some_and(|&b| !is_tchar(b) && b != b'\r' && b != b'\n') {
            return Err(HttpError::BadRequest("invalid method"));
        }
        let Some(end) = self.section_end()? else {
            return Ok(Step::Break(None));
        };
        if end == 2 {
            // An empty line before the request-line is ignored (RFC 9112 §2.2).
            self.consume(2);
            return Ok(Step::Continue(()));
        }
        let mut request = parse_head(self.available().get(..end - 2).unwrap_or_default())?;
        let framing = body_framing(&request)?;
        let expect_continue = request.minor_version == 1
            && request
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        self.consume(end);
        self.phase = match framing {
            Framing::None | Framing::Length(0) => return Ok(Step::Break(Some(request))),
            Framing::Length(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > self.max_body_bytes {
                    return Err(HttpError::PayloadTooLarge);
                }
                // Reserve only what a peer cannot make us allocate by merely claiming it.
                request.body.reserve(n.min(64 * 1024));
                Phase::Body {
                    remaining: n,
                    chunked: false,
                }
            }
            Framing::Chunked => Phase::ChunkSize,
        };
        self.pending = Some(request);
        self.expect_continue = expect_continue;
        Ok(Step::Continue(()))
    }

    /// `remaining` bytes of a Content-Length body or of one chunk.
    fn body(&mut self, remaining: usize, chunked: bool) -> Step {
        let avail = self.buf.get(self.start..).unwrap_or_default();
        let take = remaining.min(avail.len());
        if let Some(request) = &mut self.pending {
            request
                .body
                .extend_from_slice(avail.get(..take).unwrap_or_default());
        }
        self.start += take;
        if take < remaining {
            self.phase = Phase::Body {
                remaining: remaining - take,
                chunked,
            };
            return Step::Break(None);
        }
        if !chunked {
            return Step::Break(self.finish());
        }
        self.phase = Phase::ChunkDataEnd;
        Step::Continue(())
    }

    fn chunk_size(&mut self) -> Result<Step, HttpError> {
        let avail = self.buf.get(self.start..).unwrap_or_default();
        let Some(lf) = next_lf(avail, &mut self.scanned, MAX_CHUNK_LINE_BYTES)? else {
            if avail.len() >= MAX_CHUNK_LINE_BYTES {
                return Err(HttpError::BadRequest("chunk-size line too long"));
            }
            return Ok(Step::Break(None));
        };
        let size = parse_chunk_size(avail.get(..lf - 1).unwrap_or_default())?;
        self.consume(lf + 1);
        let body_len = self.pending.as_ref().map_or(0, |r| r.body.len());
        self.phase = if size == 0 {
            Phase::Trailers
        } else if size > self.max_body_bytes.saturating_sub(body_len) {
            return Err(HttpError::PayloadTooLarge);
        } else {
            Phase::Body {
                remaining: size,
                chunked: true,
            }
        };
        Ok(Step::Continue(()))
    }

    fn chunk_data_end(&mut self) -> Result<Step, HttpError> {
        match self.available() {
            [b'\r', b'\n', ..] => {
                self.consume(2);
                self.phase = Phase::ChunkSize;
                Ok(Step::Continue(()))
            }
            [] | [b'\r'] => Ok(Step::Break(None)),
            _ => Err(HttpError::BadRequest("chunk data not followed by CRLF")),
        }
    }

    /// Length of the header or trailer section up to and including its empty line. The limit applies
    /// before the section ends, so a peer cannot make us buffer forever.
    fn section_end(&mut self) -> Result<Option<usize>, HttpError> {
        let data = self.buf.get(self.start..).unwrap_or_default();
        while let Some(lf) = next_lf(data, &mut self.scanned, self.max_header_bytes)? {
            if lf == self.line_start + 1 {
                return Ok(Some(lf + 1));
            }
            self.line_start = lf + 1;
        }
        if data.len() > self.max_header_bytes {
            return Err(HttpError::HeadersTooLarge);
        }
        Ok(None)
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        self.scanned = 0;
        self.line_start = 0;
    }

    fn finish(&mut self) -> Option<Request> {
        self.phase = Phase::Head;
        self.scanned = 0;
        self.line_start = 0;
        self.expect_continue = false;
        self.pending.take()
    }
}

/// Index of the next LF in `data[..limit]`, resuming at `*scanned`; an LF not preceded by CR is an error
/// (bare LF is how parsers are made to disagree about where a line ends).
fn next_lf(data: &[u8], scanned: &mut usize, limit: usize) -> Result<Option<usize>, HttpError> {
    let window = data.get(..limit.min(data.len())).unwrap_or(data);
    let from = (*scanned).min(window.len());
    let Some(offset) = window
        .get(from..)
        .and_then(|w| w.iter().position(|&b| b == b'\n'))
    else {
        *scanned = window.len();
        return Ok(None);
    };
    let lf = from + offset;
    *scanned = lf + 1;
    match lf.checked_sub(1).and_then(|i| window.get(i)) {
        Some(b'\r') => Ok(Some(lf)),
        _ => Err(HttpError::BadRequest("line not ended by CRLF")),
    }
}

/// `head` is the request-line and field lines, each ended by CRLF, without the final empty line.
fn parse_head(head: &[u8]) -> Result<Request, HttpError> {
    let bad = HttpError::BadRequest;
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request-line"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad("invalid method"));
    }
    if method.len() > MAX_METHOD_BYTES {
        return Err(bad("method too long"));
    }
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(bad("invalid request-target"));
    }
    let minor_version = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return Err(bad("unsupported HTTP version")),
    };
    let target = latin1(target);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut request = Request {
        method: Method::from_token(method),
        path: path.to_owned(),
        query: query.to_owned(),
        minor_version,
        headers: Vec::new(),
        body: Vec::new(),
    };
    // The only empty segment is the one after the last CRLF: an empty line would have ended the section.
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some(b' ' | b'\t') = line.first() {
            return Err(bad("obsolete line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(bad("field line without colon"))?;
        let (name, value) = line.split_at(colon);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad("invalid field name"));
        }
        let value = trim_ows(value.get(1..).unwrap_or_default());
        if !value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        {
            return Err(bad("invalid field value"));
        }
        request
            .headers
            .push((latin1(&name.to_ascii_lowercase()), latin1(value)));
    }
    // RFC 9112 §3.2 (and Node's requireHostHeader): exactly one Host in 1.1, at most one in 1.0.
    let hosts = request.headers.iter().filter(|(n, _)| n == "host").count();
    if hosts > 1 || (hosts == 0 && minor_version == 1) {
        return Err(bad("missing or repeated Host"));
    }
    Ok(request)
}

fn body_framing(request: &Request) -> Result<Framing, HttpError> {
    let bad = HttpError::BadRequest;
    let values = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim_matches([' ', '\t']))
    };
    let mut length = None;
    for v in values("content-length") {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("invalid Content-Length"));
        }
        // Saturating: an absurd length is too large, not malformed.
        let n = v.bytes().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        if length.is_some_and(|l| l != n) {
            return Err(bad("conflicting Content-Length"));
        }
        length = Some(n);
    }
    if !request
        .headers
        .iter()
        .any(|(n, _)| n == "transfer-encoding")
    {
        return Ok(length.map_or(Framing::None, Framing::Length));
    }
    if length.is_some() {
        return Err(bad("both Transfer-Encoding and Content-Length"));
    }
    if request.minor_version == 0 {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means the framing is faulty.
        return Err(bad("Transfer-Encoding in HTTP/1.0"));
    }
    let mut codings = values("transfer-encoding").filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (Some(c), None) if c.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        _ => Err(bad("unsupported transfer-coding")),
    }
}

/// `chunk-size [ BWS ";" chunk-ext ]` (RFC 9112 §7.1); extensions are ignored.
fn parse_chunk_size(line: &[u8]) -> Result<usize, HttpError> {
    let bad = HttpError::BadRequest("invalid chunk size");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (size, rest) = line.split_at(digits);
    let ext = trim_ows(rest);
    if digits == 0 || !(rest.is_empty() || ext.first() == Some(&b';')) {
        return Err(bad);
    }
    if !ext.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)) {
        return Err(bad);
    }
    Ok(size.iter().fold(0usize, |n, &d| {
        let digit = char::from(d).to_digit(16).unwrap_or(0) as usize;
        n.saturating_mul(16).saturating_add(digit)
    }))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
