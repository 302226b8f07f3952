//! HTTP/1.1 for the Engine.IO endpoint: a sans-IO request parser (bytes in, [`Request`]s out) and a response
//! encoder. The parser is strict wherever leniency lets a peer smuggle a second request past a proxy (line
//! endings, header syntax, body framing) and bounded everywhere a peer could make us buffer without end.

use std::io::Write as _;

/// Node's http default.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// A chunk-size line is a few hex digits; the bound only exists so that chunk extensions cannot grow the buffer.
const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// The longest method accepted: the standard ones and WebDAV's fit with room to spare, and the application
/// hears an unusual one by its text, which should not be a 16 KiB string.
pub const MAX_METHOD_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Options,
    Head,
    Put,
    Delete,
    Patch,
    /// Any other token, as sent (at most MAX_METHOD_BYTES).
    Other(Box<str>),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Options => "OPTIONS",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Other(token) => token,
        }
    }

    /// `token` is a valid method: tchars only, so it is ASCII.
    pub fn from_token(token: &[u8]) -> Self {
        // Methods are case-sensitive (RFC 9110 §9.1): "get" is some other method.
        match token {
            b"GET" => Method::Get,
            b"POST" => Method::Post,
            b"OPTIONS" => Method::Options,
            b"HEAD" => Method::Head,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            _ => Method::Other(String::from_utf8_lossy(token).into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// request-target up to '?', as sent (not percent-decoded)
    pub path: String,
    /// raw query string after '?', "" if none
    pub query: String,
    /// 0 or 1 (HTTP/1.0 or HTTP/1.1)
    pub minor_version: u8,
    /// Names lower-cased, values trimmed, order kept. Values are decoded as ISO-8859-1 (one char per byte), as
    /// Node and WSGI do, so encoding a value back to Latin-1 gives the bytes the peer sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// `name` given lower-case; first match.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Percent-decoded, '+' as space; first match. Malformed escapes are kept literally.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .find_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == name).then(|| percent_decode(value))
            })
    }

    /// HTTP/1.1 is persistent unless "Connection: close"; HTTP/1.0 only with "Connection: keep-alive".
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.minor_version == 1 || self.has_token("connection", "keep-alive")
    }

    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == Method::Get
            && self.has_token("upgrade", "websocket")
            && self.has_token("connection", "upgrade")
    }

    /// Whether any `name` field holds `token` in its comma-separated list (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    BadRequest(&'static str),
    HeadersTooLarge,
    PayloadTooLarge,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeadersTooLarge => 431,
            HttpError::PayloadTooLarge => 413,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::HeadersTooLarge => f.write_str("request header fields too large"),
            HttpError::PayloadTooLarge => f.write_str("payload too large"),
        }
    }
}

impl std::error::Error for HttpError {}

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

    /// True once after a head with "Expect: 100-continue" whose body has not arrived yet: the caller should
    /// write "HTTP/1.1 100 Continue" (curl waits a second for it before sending large bodies).
    pub fn take_expect_continue(&mut self) -> bool {
        std::mem::take(&mut self.expect_continue)
    }

    fn advance(&mut self) -> Result<Option<Request>, HttpError> {
        loop {
            let avail = self.buf.get(self.start..).unwrap_or_default();
            match self.phase {
                Phase::Head => {
                    // Fail fast on TLS or other binary protocols instead of waiting for a line end.
                    if avail
                        .first()
                        .is_some_and(|&b| !is_tchar(b) && b != b'\r' && b != b'\n')
                    {
                        return Err(HttpError::BadRequest("invalid method"));
                    }
                    let Some(end) = self.section_end()? else {
                        return Ok(None);
                    };
                    let avail = self.buf.get(self.start..).unwrap_or_default();
                    if end == 2 {
                        // An empty line before the request-line is ignored (RFC 9112 §2.2).
                        self.consume(2);
                        continue;
                    }
                    let mut request = parse_head(avail.get(..end - 2).unwrap_or_default())?;
                    let framing = body_framing(&request)?;
                    let expect_continue = request.minor_version == 1
                        && request
                            .header("expect")
                            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
                    self.consume(end);
                    self.phase = match framing {
                        Framing::None | Framing::Length(0) => return Ok(Some(request)),
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
                }
                Phase::Body { remaining, chunked } => {
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
                        return Ok(None);
                    }
                    if !chunked {
                        return Ok(self.finish());
                    }
                    self.phase = Phase::ChunkDataEnd;
                }
                Phase::ChunkSize => {
                    let Some(lf) = next_lf(avail, &mut self.scanned, MAX_CHUNK_LINE_BYTES)? else {
                        if avail.len() >= MAX_CHUNK_LINE_BYTES {
                            return Err(HttpError::BadRequest("chunk-size line too long"));
                        }
                        return Ok(None);
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
                }
                Phase::ChunkDataEnd => match avail {
                    [b'\r', b'\n', ..] => {
                        self.consume(2);
                        self.phase = Phase::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok(None),
                    _ => return Err(HttpError::BadRequest("chunk data not followed by CRLF")),
                },
                Phase::Trailers => {
                    let Some(end) = self.section_end()? else {
                        return Ok(None);
                    };
                    self.consume(end);
                    return Ok(self.finish());
                }
                Phase::Failed(ref err) => return Err(err.clone()),
            }
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

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match (b, hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            (b'+', ..) => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_body(self, content_type: &str, body: Vec<u8>) -> Self {
        let mut response = self.with_header("Content-Type", content_type);
        response.body = body;
        response
    }

    /// 1xx, 204 and 304 carry no body: neither Content-Length nor the body is written.
    pub fn is_bodiless(&self) -> bool {
        matches!(self.status, 100..=199 | 204 | 304)
    }

    /// The Content-Length `encode` adds: none for a bodiless status, or when the caller set one.
    pub fn added_content_length(&self) -> Option<usize> {
        let set = (self.headers.iter()).any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        (!self.is_bodiless() && !set).then_some(self.body.len())
    }

    /// Status line with the standard reason phrase, headers as given, then Content-Length (see
    /// `added_content_length`), then the body. Fields are written as `sanitize_field` leaves them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        for (name, value) in &self.headers {
            out.extend_from_slice(sanitize_field(name).as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(sanitize_field(value).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(len) = self.added_content_length() {
            let _ = write!(out, "Content-Length: {len}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.is_bodiless() {
            out.extend_from_slice(&self.body);
        }
    }
}

/// A response field's name or value with CR, LF and NUL as spaces: a value that came from application code must
/// not be able to split the response.
pub fn sanitize_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        s.replace(['\r', '\n', '\0'], " ").into()
    } else {
        s.into()
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../tests/vectors/http.json");

    #[derive(Debug, PartialEq)]
    struct Outcome {
        requests: Vec<Request>,
        error: Option<HttpError>,
        idle: bool,
        buffered: Vec<u8>,
    }

    /// Feeds `pieces` in turn, taking every request after each one, as a driver does (it stops asking after an
    /// upgrade request: what follows is WebSocket).
    fn run<'a>(parser: &mut RequestParser, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
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

    /// `key` as text, or `key_hex` as hex.
    fn bytes(v: &Value, key: &str) -> Option<Vec<u8>> {
        if let Some(text) = v.get(key).and_then(Value::as_str) {
            return Some(text.as_bytes().to_vec());
        }
        let hex = v.get(format!("{key}_hex"))?.as_str()?;
        let digit = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
        Some((0..hex.len()).step_by(2).map(digit).collect())
    }

    fn fields(v: &Value) -> Vec<(String, String)> {
        let field = |h: &Value| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into());
        v["headers"].as_array().unwrap().iter().map(field).collect()
    }

    fn expected(v: &Value) -> Request {
        let text = |k: &str| v.get(k).and_then(Value::as_str);
        let method = Method::from_token(text("method").unwrap().as_bytes());
        Request {
            method,
            path: text("path").unwrap().into(),
            query: text("query").unwrap_or("").into(),
            minor_version: v.get("minor_version").and_then(Value::as_u64).unwrap_or(1) as u8,
            headers: fields(v),
            body: bytes(v, "body").unwrap_or_default(),
        }
    }

    fn check_derived(request: &Request, v: &Value, name: &str) {
        let flag = |k: &str| v.get(k).and_then(Value::as_bool);
        if let Some(keep_alive) = flag("keep_alive") {
            assert_eq!(request.keep_alive(), keep_alive, "{name}: keep_alive");
        }
        if let Some(upgrade) = flag("websocket_upgrade") {
            assert_eq!(request.is_websocket_upgrade(), upgrade, "{name}: upgrade");
        }
        for (param, value) in v
            .get("query_params")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let want = value.as_str().map(str::to_owned);
            assert_eq!(
                request.query_param(param),
                want,
                "{name}: query_param({param})"
            );
        }
    }

    #[test]
    fn request_vectors_whole_byte_at_a_time_and_split_at_every_boundary() {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        for case in doc["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let limit =
                |k: &str| case.get(k).unwrap_or(&doc["defaults"][k]).as_u64().unwrap() as usize;
            let parser = || RequestParser::new(limit("max_header_bytes"), limit("max_body_bytes"));
            let wire = bytes(case, "wire").unwrap();
            let want = run(&mut parser(), [&wire[..]]);
            let cases = case["requests"].as_array().unwrap();
            let requests: Vec<Request> = cases.iter().map(expected).collect();
            assert_eq!(want.requests, requests, "{name}");
            for (request, v) in want.requests.iter().zip(cases) {
                check_derived(request, v, name);
            }
            let status = case.get("error").and_then(Value::as_u64);
            assert_eq!(
                want.error.as_ref().map(|e| u64::from(e.status())),
                status,
                "{name}"
            );
            if status.is_none() {
                assert_eq!(
                    want.buffered,
                    bytes(case, "buffered").unwrap_or_default(),
                    "{name}"
                );
                assert_eq!(
                    want.idle,
                    case.get("idle").and_then(Value::as_bool).unwrap_or(true),
                    "{name}"
                );
            }
            assert_eq!(
                run(&mut parser(), wire.chunks(1)),
                want,
                "{name}: one byte at a time"
            );
            for i in 0..wire.len() {
                let (a, b) = wire.split_at(i);
                assert_eq!(run(&mut parser(), [a, b]), want, "{name}: split at {i}");
            }
        }
    }

    #[test]
    fn response_vectors() {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        for case in doc["responses"].as_array().unwrap() {
            let status = case["status"].as_u64().unwrap() as u16;
            let response = Response {
                status,
                headers: fields(case),
                body: bytes(case, "body").unwrap_or_default(),
            };
            let mut out = Vec::new();
            response.encode(&mut out);
            assert_eq!(out, bytes(case, "wire").unwrap(), "{}", case["name"]);
        }
        let built = Response::new(200)
            .with_header("A", "1")
            .with_body("text/plain", b"ok".to_vec());
        let headers = vec![
            ("A".into(), "1".into()),
            ("Content-Type".into(), "text/plain".into()),
        ];
        assert_eq!(
            built,
            Response {
                status: 200,
                headers,
                body: b"ok".to_vec()
            }
        );
        assert_eq!(
            (reason_phrase(404), reason_phrase(503)),
            ("Not Found", "Service Unavailable")
        );
    }

    #[test]
    fn errors_are_sticky_and_discard_input() {
        let mut p = RequestParser::new(DEFAULT_MAX_HEADER_BYTES, 100);
        p.feed(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n");
        let err = p.next_request().unwrap_err();
        assert_eq!(err.status(), 400);
        p.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(p.next_request(), Err(err));
        assert!(p.take_buffered().is_empty() && !p.is_idle());
        let statuses = [
            HttpError::HeadersTooLarge.status(),
            HttpError::PayloadTooLarge.status(),
        ];
        assert_eq!(statuses, [431, 413]);
    }

    #[test]
    fn header_lookup_takes_the_first_match() {
        let mut p = RequestParser::new(DEFAULT_MAX_HEADER_BYTES, 100);
        p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        let r = p.next_request().unwrap().unwrap();
        assert_eq!(
            (r.header("x-a"), r.header("host"), r.header("x-b")),
            (Some("1"), Some("h"), None)
        );
    }

    #[test]
    fn take_buffered_after_upgrade_and_idle() {
        let mut p = RequestParser::new(DEFAULT_MAX_HEADER_BYTES, 100);
        assert!(p.is_idle());
        p.feed(
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81",
        );
        assert!(p.next_request().unwrap().unwrap().is_websocket_upgrade());
        assert!(!p.is_idle());
        p.feed(b"\x80");
        assert_eq!(p.take_buffered(), b"\x81\x80");
        assert!(p.is_idle() && p.take_buffered().is_empty());
    }

    #[test]
    fn body_limit_can_change_between_requests() {
        let mut p = RequestParser::new(DEFAULT_MAX_HEADER_BYTES, 5);
        p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(p.next_request().unwrap().unwrap().body, b"hello");
        p.set_max_body_bytes(4);
        p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(p.next_request(), Err(HttpError::PayloadTooLarge));
    }

    #[test]
    fn expect_continue_is_reported_once_while_the_body_is_awaited() {
        let mut p = RequestParser::new(DEFAULT_MAX_HEADER_BYTES, 100);
        p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(p.next_request(), Ok(None));
        assert!(p.take_expect_continue() && !p.take_expect_continue());
        p.feed(b"okGET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(p.next_request().unwrap().unwrap().body, b"ok");
        assert!(p.next_request().unwrap().is_some() && !p.take_expect_continue());
    }

    /// The tiny encoder side of the round trip: writes `request` as a client would, field names upper-cased to
    /// exercise lower-casing, the body chunked when a Transfer-Encoding field says so.
    fn write_request(method: &str, request: &Request) -> Vec<u8> {
        let mut out = format!("{method} {}", request.path).into_bytes();
        if !request.query.is_empty() {
            out.extend(format!("?{}", request.query).bytes());
        }
        out.extend(format!(" HTTP/1.{}\r\n", request.minor_version).bytes());
        for (name, value) in &request.headers {
            out.extend(name.to_ascii_uppercase().bytes().chain(*b": "));
            out.extend(value.chars().map(|c| c as u8).chain(*b"\r\n"));
        }
        out.extend_from_slice(b"\r\n");
        if request.header("transfer-encoding").is_none() {
            out.extend_from_slice(&request.body);
            return out;
        }
        for chunk in request.body.chunks(7) {
            out.extend(
                format!("{:x}\r\n", chunk.len())
                    .bytes()
                    .chain(chunk.iter().copied())
                    .chain(*b"\r\n"),
            );
        }
        out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        out
    }

    fn arb_request() -> impl Strategy<Value = (&'static str, Request)> {
        let method = prop::sample::select(vec![
            "GET", "POST", "OPTIONS", "HEAD", "PUT", "DELETE", "PATCH", "M-SEARCH",
        ]);
        let value = "([!-~\u{80}-\u{ff}]([ -~\t\u{80}-\u{ff}]{0,20}[!-~\u{80}-\u{ff}])?)?";
        let fields = prop::collection::vec(("x-[a-z0-9!#$%&'*+.^_`|~-]{1,10}", value), 0..6);
        let body = prop::collection::vec(any::<u8>(), 0..100);
        let target = ("/[a-zA-Z0-9._~%/-]{0,20}", "[a-zA-Z0-9=&%+._-]{0,20}");
        (method, target, 0u8..=1, fields, body, any::<bool>()).prop_map(
            |(method, (path, query), minor_version, fields, body, chunked)| {
                let mut headers = vec![("host".to_owned(), "example.com".to_owned())];
                headers.extend(fields);
                if chunked && minor_version == 1 {
                    headers.push(("transfer-encoding".into(), "chunked".into()));
                } else if !body.is_empty() {
                    headers.push(("content-length".into(), body.len().to_string()));
                }
                let method_enum = Method::from_token(method.as_bytes());
                let request = Request {
                    method: method_enum,
                    path,
                    query,
                    minor_version,
                    headers,
                    body,
                };
                (method, request)
            },
        )
    }

    proptest! {
        #[test]
        fn written_requests_parse_back_equal((method, request) in arb_request(), cut in any::<prop::sample::Index>()) {
            let wire = write_request(method, &request);
            let (a, b) = wire.split_at(cut.index(wire.len() + 1));
            let out = run(&mut RequestParser::new(DEFAULT_MAX_HEADER_BYTES, 1000), [a, b]);
            prop_assert_eq!(out.error, None);
            prop_assert_eq!(out.requests, vec![request]);
            prop_assert!(out.idle);
        }

        #[test]
        fn random_bytes_never_panic_or_loop(
            prefix in prop::sample::select(vec![
                "",
                "GET / HTTP/1.1\r\nHost: h\r\n",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
            ]),
            tail in prop::collection::vec(
                prop_oneof![any::<u8>(), prop::sample::select(b"\r\n\r\n :;,0aF\tGET /HTTP/1.1".to_vec())],
                0..300,
            ),
            piece in 1usize..40,
            small in any::<bool>(),
        ) {
            let wire = [prefix.as_bytes(), &tail].concat();
            let mut p = if small { RequestParser::new(48, 16) } else { RequestParser::new(4096, 1000) };
            let mut returned = 0;
            for chunk in wire.chunks(piece) {
                p.feed(chunk);
                loop {
                    match p.next_request() {
                        Ok(Some(_)) => returned += 1,
                        Ok(None) => break,
                        Err(e) => {
                            prop_assert_eq!(p.next_request(), Err(e));
                            break;
                        }
                    }
                    prop_assert!(returned <= wire.len());
                }
            }
            let _ = (p.is_idle(), p.take_buffered());
        }
    }
}
