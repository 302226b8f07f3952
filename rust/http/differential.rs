//! Our request parser against `httparse` on the same bytes: the `http_differential` fuzz target calls
//! [`compare`], and so do the tests below. httparse reads a request's head only and is lenient where this parser
//! is strict on purpose; each way the two may disagree is an [`Explained`] variant with its reason (the same list
//! is in docs/fuzzing.md), and any other disagreement is a finding.
use super::{HttpError, Request, RequestParser, DEFAULT_MAX_HEADER_BYTES, MAX_METHOD_BYTES};

/// The body limit of the comparison: room for what a fuzzer writes, small enough to be passed.
pub const MAX_BODY_BYTES: usize = 4096;

/// A field line is at least 4 bytes ("a:" CRLF), so a head within DEFAULT_MAX_HEADER_BYTES never fills an array
/// this long: httparse never stops for want of room.
const MAX_FIELDS: usize = DEFAULT_MAX_HEADER_BYTES / 4 + 1;

/// Why the two parsers may disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explained {
    /// A line ended by LF alone: httparse takes it (RFC 9112 §2.2 lets a recipient), we refuse it (400), as Node
    /// does: parsers that disagree about where a line ends can be made to see different requests.
    BareLf,
    /// HTTP/1.1 without Host, or Host repeated: RFC 9112 §3.2 says 400; httparse leaves fields to its caller.
    Host,
    /// A method over MAX_METHOD_BYTES (400): the application hears a method by its text.
    LongMethod,
    /// A byte over 0x7E in the request-target (400): RFC 3986 has none (clients percent-encode them); httparse
    /// takes UTF-8 there.
    RawTargetByte,
    /// Content-Length, Transfer-Encoding and chunks are ours alone (400 for a faulty framing): httparse stops at
    /// the head.
    BodyFraming,
    /// 431 for a head over DEFAULT_MAX_HEADER_BYTES (Node's default); httparse parses any length.
    HeadTooLarge,
    /// 413 for a body over the limit, known from its Content-Length or a chunk size.
    BodyTooLarge,
    /// httparse refuses a byte as soon as it reads it; we judge a head once its end is in (but its first byte,
    /// so that TLS and other protocols fail at once).
    EarlyRefusal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Agree,
    Explained(Explained),
}

/// What this crate's parser made of the bytes.
#[derive(Debug)]
enum Ours {
    Request {
        request: Request,
        consumed: usize,
    },
    /// The head is read; the body it announces is not all in.
    AwaitingBody(Request),
    Incomplete,
    Refused(HttpError),
}

fn ours(wire: &[u8]) -> Ours {
    let mut parser = RequestParser::new(DEFAULT_MAX_HEADER_BYTES, MAX_BODY_BYTES);
    parser.feed(wire);
    match parser.next_request() {
        Ok(Some(request)) => {
            let consumed = wire.len() - parser.take_buffered().len();
            Ours::Request { request, consumed }
        }
        Ok(None) => match parser.pending_head() {
            Some(head) => Ours::AwaitingBody(head.clone()),
            None => Ours::Incomplete,
        },
        Err(err) => Ours::Refused(err),
    }
}

/// Ok(Agree) or Ok(Explained) when the parsers agree or differ for a listed reason; Err describes any other
/// disagreement.
pub fn compare(wire: &[u8]) -> Result<Verdict, String> {
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut theirs = httparse::Request::new(&mut fields);
    let status = theirs.parse(wire);
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => Some(n),
        _ => None,
    };
    match (ours(wire), status) {
        (Ours::Refused(_), Err(_)) | (Ours::Incomplete, Ok(httparse::Status::Partial)) => {
            Ok(Verdict::Agree)
        }
        (Ours::Incomplete, Err(_)) => Ok(Verdict::Explained(Explained::EarlyRefusal)),
        (Ours::AwaitingBody(request), Ok(httparse::Status::Complete(_))) => {
            same_head(&request, &theirs).map(|()| Verdict::Agree)
        }
        (Ours::Request { request, consumed }, Ok(httparse::Status::Complete(n))) => {
            same_head(&request, &theirs)?;
            let chunked = request.header("transfer-encoding").is_some();
            let expected = n + request.body.len();
            if consumed == expected || (chunked && consumed > expected) {
                Ok(Verdict::Agree)
            } else {
                Err(format!(
                    "we read {consumed} bytes, httparse's head is {n} and the body {}",
                    request.body.len()
                ))
            }
        }
        (Ours::Refused(err), Ok(_)) => explain_refusal(&err, wire, head_len, &theirs),
        (ours, status) => Err(format!("we: {ours:?}; httparse: {status:?}")),
    }
}

/// Why we refused what httparse accepted (whole, `head_len` bytes of head, or so far).
fn explain_refusal(
    err: &HttpError,
    wire: &[u8],
    head_len: Option<usize>,
    theirs: &httparse::Request,
) -> Result<Verdict, String> {
    let leading = wire
        .chunks(2)
        .take_while(|pair| *pair == &b"\r\n"[..])
        .count()
        * 2;
    let read = head_len.unwrap_or(wire.len()) - leading;
    let explained = match (err, head_len) {
        (HttpError::BadRequest("line not ended by CRLF"), _) if has_bare_lf(wire) => {
            Some(Explained::BareLf)
        }
        (HttpError::HeadersTooLarge, _) if read > DEFAULT_MAX_HEADER_BYTES => {
            Some(Explained::HeadTooLarge)
        }
        (HttpError::PayloadTooLarge, Some(_)) => Some(Explained::BodyTooLarge),
        (HttpError::BadRequest(why), Some(_)) => explain_head(why, theirs),
        _ => None,
    };
    explained
        .map(Verdict::Explained)
        .ok_or_else(|| format!("we refused ({err}) what httparse accepts: {theirs:?}"))
}

/// A head httparse read whole that we refused, for `why`.
fn explain_head(why: &str, theirs: &httparse::Request) -> Option<Explained> {
    let hosts = theirs
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    match why {
        "missing or repeated Host" if hosts > 1 || (hosts == 0 && theirs.version == Some(1)) => {
            Some(Explained::Host)
        }
        "method too long" if theirs.method.is_some_and(|m| m.len() > MAX_METHOD_BYTES) => {
            Some(Explained::LongMethod)
        }
        "invalid request-target" if theirs.path.is_some_and(|p| p.bytes().any(|b| b > 0x7e)) => {
            Some(Explained::RawTargetByte)
        }
        "invalid Content-Length"
        | "conflicting Content-Length"
        | "both Transfer-Encoding and Content-Length"
        | "Transfer-Encoding in HTTP/1.0"
        | "unsupported transfer-coding"
        | "invalid chunk size"
        | "chunk data not followed by CRLF"
        | "chunk-size line too long" => Some(Explained::BodyFraming),
        _ => None,
    }
}

fn has_bare_lf(wire: &[u8]) -> bool {
    wire.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || wire.get(i - 1) != Some(&b'\r')))
}

/// The head's parts as we keep them: names lower-cased, values Latin-1, the target split at its first '?'.
fn same_head(ours: &Request, theirs: &httparse::Request) -> Result<(), String> {
    let target = theirs.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let fields: Vec<(String, String)> = (theirs.headers.iter())
        .map(|h| (h.name.to_ascii_lowercase(), super::latin1(h.value)))
        .collect();
    let same = Some(ours.method.as_str()) == theirs.method
        && ours.path == path
        && ours.query == query
        && Some(ours.minor_version) == theirs.version
        && ours.headers == fields;
    if same {
        Ok(())
    } else {
        Err(format!(
            "heads differ: we read {ours:?}, httparse {theirs:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn verdict(wire: &str) -> Result<Verdict, String> {
        compare(wire.as_bytes())
    }

    #[test]
    fn every_listed_disagreement_is_recognised() {
        let explained =
            |wire: &str, why| assert_eq!(verdict(wire), Ok(Verdict::Explained(why)), "{wire:?}");
        explained("GET / HTTP/1.1\nHost: h\n\n", Explained::BareLf);
        explained("GET / HTTP/1.1\r\nHost: h\n", Explained::BareLf);
        explained("GET / HTTP/1.1\r\n\r\n", Explained::Host);
        explained(
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            Explained::Host,
        );
        let long = format!(
            "{} / HTTP/1.1\r\nHost: h\r\n\r\n",
            "M".repeat(MAX_METHOD_BYTES + 1)
        );
        explained(&long, Explained::LongMethod);
        explained(
            "GET /\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n",
            Explained::RawTargetByte,
        );
        explained(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n",
            Explained::BodyFraming,
        );
        explained(
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Explained::BodyFraming,
        );
        explained(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
            Explained::BodyFraming,
        );
        explained(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4097\r\n\r\n",
            Explained::BodyTooLarge,
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "v".repeat(DEFAULT_MAX_HEADER_BYTES)
        );
        explained(&big, Explained::HeadTooLarge);
        explained(
            &big[..DEFAULT_MAX_HEADER_BYTES + 10],
            Explained::HeadTooLarge,
        );
        explained(
            "GET / HTTP/1.1\r\nHost: h\r\nX:\x01",
            Explained::EarlyRefusal,
        );
    }

    #[test]
    fn agreements_include_bodies_and_partial_heads() {
        for wire in [
            "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-A:  v \t\r\n\r\n",
            "\r\n\r\nGET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nokGET",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\npart",
            "GET / HTTP/1.1\r\nHo",
            "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            "\x16\x03\x01",
        ] {
            assert_eq!(verdict(wire), Ok(Verdict::Agree), "{wire:?}");
        }
    }

    #[test]
    fn the_http_vectors_show_no_unexplained_disagreement() {
        let doc: Value =
            serde_json::from_str(include_str!("../../tests/vectors/http.json")).unwrap();
        for case in doc["cases"].as_array().unwrap() {
            let Some(wire) = case["wire"].as_str() else {
                continue;
            };
            assert!(
                verdict(wire).is_ok(),
                "{}: {:?}",
                case["name"],
                verdict(wire)
            );
        }
    }
}
