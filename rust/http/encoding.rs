//! Compressed response bodies, as Node's engine.io chooses their encoding for a long-polling response
//! (`accepts(req).encodings(["gzip", "deflate"])`, by the negotiator package): the one the request's
//! Accept-Encoding rates highest; on a tie the more specific entry (a name over `*`), then the one named first
//! in the header, then gzip. The bytes come from flate2.
use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Gzip,
    /// HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2), as Node's `zlib.createDeflate` writes it.
    Deflate,
}

impl ContentEncoding {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
        }
    }

    /// `body`, compressed at zlib's default level (Node's); None if the encoder failed.
    pub fn encode(self, body: &[u8]) -> Option<Vec<u8>> {
        let out = Vec::with_capacity(body.len() / 3 + 32);
        match self {
            Self::Gzip => {
                let mut encoder = GzEncoder::new(out, Compression::default());
                encoder.write_all(body).ok()?;
                encoder.finish().ok()
            }
            Self::Deflate => {
                let mut encoder = ZlibEncoder::new(out, Compression::default());
                encoder.write_all(body).ok()?;
                encoder.finish().ok()
            }
        }
    }
}

/// How an Accept-Encoding entry rates one encoding: quality, specificity (1 named, 0 `*`), and position.
#[derive(Debug, Clone, Copy)]
struct Rating {
    q: f32,
    specific: u8,
    position: usize,
}

fn rate(header: &str, encoding: ContentEncoding) -> Option<Rating> {
    let mut best: Option<Rating> = None;
    for (position, entry) in header.split(',').enumerate() {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let specific = if name.eq_ignore_ascii_case(encoding.name()) {
            1
        } else if name == "*" {
            0
        } else {
            continue;
        };
        let mut q = 1.0;
        for param in parts {
            if let Some((key, value)) = param.split_once('=') {
                if key.trim() == "q" {
                    // negotiator's parseFloat: what does not read as a number rates 0.
                    q = value.trim().parse::<f32>().unwrap_or(0.0);
                }
            }
        }
        let rating = Rating {
            q,
            specific,
            position,
        };
        // negotiator keeps the more specific entry, then the higher quality.
        let better = best.is_none_or(|b| (specific, q) > (b.specific, b.q));
        if better {
            best = Some(rating);
        }
    }
    best.filter(|r| r.q > 0.0)
}

/// The encoding to compress a response with for this Accept-Encoding, if it accepts gzip or deflate.
pub fn preferred(accept_encoding: &str) -> Option<ContentEncoding> {
    let gzip = rate(accept_encoding, ContentEncoding::Gzip).map(|r| (r, ContentEncoding::Gzip));
    let deflate =
        rate(accept_encoding, ContentEncoding::Deflate).map(|r| (r, ContentEncoding::Deflate));
    match (gzip, deflate) {
        (Some((g, _)), Some((d, _))) => {
            let deflate_first = d.q > g.q
                || (d.q == g.q && d.specific > g.specific)
                || (d.q == g.q && d.specific == g.specific && d.position < g.position);
            Some(if deflate_first {
                ContentEncoding::Deflate
            } else {
                ContentEncoding::Gzip
            })
        }
        (one, other) => one.or(other).map(|(_, encoding)| encoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{GzDecoder, ZlibDecoder};
    use std::io::Read;

    #[test]
    fn the_encoding_negotiator_would_choose() {
        use ContentEncoding::*;
        for (header, expected) in [
            ("gzip, deflate, br", Some(Gzip)),
            ("deflate, gzip", Some(Deflate)),
            ("gzip;q=0.5, deflate", Some(Deflate)),
            ("deflate;q=0, gzip;q=0.1", Some(Gzip)),
            ("*", Some(Gzip)),
            ("*;q=0.5, deflate", Some(Deflate)),
            ("gzip;q=0, *", Some(Deflate)),
            ("br", None),
            ("identity", None),
            ("", None),
            ("gzip;q=0, deflate;q=0", None),
            ("GZIP", Some(Gzip)),
            ("gzip;q=abc, deflate;q=0.2", Some(Deflate)),
        ] {
            assert_eq!(preferred(header), expected, "{header:?}");
        }
    }

    #[test]
    fn bodies_read_back() {
        let body = b"4hello".repeat(500);
        let mut read = Vec::new();
        let gz = ContentEncoding::Gzip.encode(&body).unwrap();
        GzDecoder::new(&gz[..]).read_to_end(&mut read).unwrap();
        assert_eq!(read, body);
        assert!(gz.len() < body.len() / 10);
        read.clear();
        let z = ContentEncoding::Deflate.encode(&body).unwrap();
        assert_eq!(z[0], 0x78, "the zlib header");
        ZlibDecoder::new(&z[..]).read_to_end(&mut read).unwrap();
        assert_eq!(read, body);
    }
}
