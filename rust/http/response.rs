//! The response encoder.
use std::io::Write as _;

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
