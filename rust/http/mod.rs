//! HTTP/1.1 for the Engine.IO endpoint: a sans-IO request parser (bytes in, [`Request`]s out) and a response
//! encoder. The parser is strict wherever leniency lets a peer smuggle a second request past a proxy (line
//! endings, header syntax, body framing) and bounded everywhere a peer could make us buffer without end.

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod differential;
pub mod encoding;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod feed;
mod parser;
mod response;

pub use parser::RequestParser;
pub use response::{reason_phrase, sanitize_field, Response};

/// Node's http default.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
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
        query_param(&self.query, name)
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

/// The first parameter `name` of a raw query string, its name and value percent-decoded ('+' as space);
/// malformed escapes are kept literally. Whoever reads a parameter reads it so (the engine, the workers' router).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
}

pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::feed::run;
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../tests/vectors/http.json");

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
