//! RFC 7692's permessage-deflate as Node's `ws` speaks it, sans-IO: the negotiation of its parameters in the
//! opening handshake (`negotiate`), and each message compressed (`Deflater`) or inflated (`Inflater`) by flate2
//! (zlib-rs: raw DEFLATE, with the window sizes negotiated).
//!
//! ```text
//! handshake   the client's offers, in order: the first that the options accept is answered in
//!             Sec-WebSocket-Extensions; none acceptable: no extension (ws answers 400); malformed: 400, as ws
//! message     out: compressed when the packet allows it and it is at least `threshold` bytes (RSV1 set);
//!             in: a message whose first frame has RSV1 is inflated, at most max_payload bytes (past it: 1009)
//! memory      the compressor and the decompressor are made on first use, and kept between messages only when
//!             their context is taken over (the default); without context takeover they are dropped after
//!             each message
//! ```
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub const EXTENSION: &str = "permessage-deflate";
/// What ends a sync flush: RFC 7692 7.2.1 drops it from each message, and the receiver appends it again.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Raw DEFLATE through zlib cannot compress with a 256-byte window (zlib makes it 512), so an offer that asks
/// the server for 8 bits is declined; inflating, a larger window than the peer's is harmless.
const MIN_DEFLATE_BITS: u8 = 9;
const MAX_BITS: u8 = 15;
/// The output grows by at most this much per step while inflating, so a message that inflates past the limit
/// costs the limit plus one step, not what it would inflate to.
const INFLATE_STEP: usize = 64 * 1024;

/// The server's options: ws's `perMessageDeflate` options, in their meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Messages shorter than this many bytes go out uncompressed (Node's `threshold`, 1024).
    pub threshold: usize,
    /// ws's `serverNoContextTakeover`: None accepts what the client asks; Some(true) always asks it of the
    /// server (no compressor kept between messages); Some(false) declines offers that ask for it.
    pub server_no_context_takeover: Option<bool>,
    /// ws's `clientNoContextTakeover`: true asks the client not to keep its context (the server then keeps
    /// no decompressor between messages).
    pub client_no_context_takeover: bool,
    /// ws's `serverMaxWindowBits` (9 to 15): the server's window; offers that ask for a smaller one are declined.
    pub server_max_window_bits: Option<u8>,
    /// ws's `clientMaxWindowBits` (8 to 15): the client's window, for offers that say they can take one.
    pub client_max_window_bits: Option<u8>,
    /// zlib's compression level (0 to 9; ws's `zlibDeflateOptions.level`, zlib's default 6).
    pub level: u32,
}

impl Default for DeflateConfig {
    /// Node's `perMessageDeflate: true`.
    fn default() -> Self {
        DeflateConfig {
            threshold: 1024,
            server_no_context_takeover: None,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            level: 6,
        }
    }
}

/// The parameters agreed for one WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

impl Params {
    /// The response's Sec-WebSocket-Extensions value.
    pub fn header(&self) -> String {
        let mut out = EXTENSION.to_owned();
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            out.push_str(&format!("; client_max_window_bits={bits}"));
        }
        out
    }

    /// A server's state for a WebSocket with these parameters.
    pub fn server_state(&self, config: &DeflateConfig) -> PerMessageDeflate {
        PerMessageDeflate {
            inflater: self.inflater(),
            deflater: self.deflater(config.level),
            threshold: config.threshold,
        }
    }

    /// The server's compressor for these parameters.
    pub fn deflater(&self, level: u32) -> Deflater {
        Deflater::new(
            level,
            self.server_max_window_bits.unwrap_or(MAX_BITS),
            self.server_no_context_takeover,
        )
    }

    /// The server's decompressor for these parameters.
    pub fn inflater(&self) -> Inflater {
        Inflater::new(
            self.client_max_window_bits.unwrap_or(MAX_BITS),
            self.client_no_context_takeover,
        )
    }
}

/// One WebSocket's permessage-deflate, both ways: what it inflates, what it compresses, and from which size.
#[derive(Debug)]
pub struct PerMessageDeflate {
    pub inflater: Inflater,
    pub deflater: Deflater,
    /// Messages shorter than this go out as they are.
    pub threshold: usize,
}

/// The Sec-WebSocket-Extensions header could not be read (ws answers 400 "Invalid or unacceptable
/// Sec-WebSocket-Extensions header").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadExtensions(pub &'static str);

/// An offer's parameters, as read: each name with its value, if it has one.
type RawOffer = Vec<(String, Option<String>)>;

/// The parameters to answer a client's Sec-WebSocket-Extensions with, as ws's `acceptAsServer` chooses them;
/// None when the client offers no permessage-deflate the options accept.
pub fn negotiate(header: &str, config: &DeflateConfig) -> Result<Option<Params>, BadExtensions> {
    for offer in parse(header)? {
        let params = read_offer(&offer)?;
        if let Some(accepted) = accept(params, config) {
            return Ok(Some(accepted));
        }
    }
    Ok(None)
}

/// One offer's parameters, checked as ws's `normalizeParams`: unknown or repeated names, and values out of range,
/// make the whole header bad.
fn read_offer(offer: &RawOffer) -> Result<Offer, BadExtensions> {
    let mut params = Offer::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in offer {
        if seen.contains(&name.as_str()) {
            return Err(BadExtensions("a parameter given twice"));
        }
        seen.push(name);
        let bits = |value: &Option<String>| {
            value
                .as_deref()
                .and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=MAX_BITS).contains(b))
                .ok_or(BadExtensions("window bits out of range"))
        };
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => params.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => params.client_no_context_takeover = true,
            ("server_max_window_bits", v) => params.server_max_window_bits = Some(bits(v)?),
            ("client_max_window_bits", None) => params.client_max_window_bits = Some(None),
            ("client_max_window_bits", v) => params.client_max_window_bits = Some(Some(bits(v)?)),
            _ => return Err(BadExtensions("an unknown or malformed parameter")),
        }
    }
    Ok(params)
}

/// An offer read: `client_max_window_bits` may come without a value (the client can take any window).
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

fn accept(offer: Offer, config: &DeflateConfig) -> Option<Params> {
    let declined = (config.server_no_context_takeover == Some(false)
        && offer.server_no_context_takeover)
        || offer
            .server_max_window_bits
            .is_some_and(|asked| config.server_max_window_bits.is_some_and(|own| own > asked))
        || (config.client_max_window_bits.is_some() && offer.client_max_window_bits.is_none());
    let server_max_window_bits = config
        .server_max_window_bits
        .or(offer.server_max_window_bits);
    if declined || server_max_window_bits.is_some_and(|bits| bits < MIN_DEFLATE_BITS) {
        return None;
    }
    Some(Params {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover == Some(true),
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits: config
            .client_max_window_bits
            .or(offer.client_max_window_bits.flatten()),
    })
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn token(text: &str) -> Result<String, BadExtensions> {
    let text = text.trim_matches([' ', '\t']);
    if text.is_empty() || !text.chars().all(is_token_char) {
        return Err(BadExtensions("not a token"));
    }
    Ok(text.to_owned())
}

/// Splits `text` at `sep` outside quoted strings.
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(text.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

/// The permessage-deflate offers of a Sec-WebSocket-Extensions value (RFC 6455 9.1's grammar; other extensions
/// are read and left out).
fn parse(header: &str) -> Result<Vec<RawOffer>, BadExtensions> {
    let mut offers = Vec::new();
    for extension in split_outside_quotes(header, ',') {
        let mut parts = split_outside_quotes(extension, ';').into_iter();
        let name = token(parts.next().unwrap_or_default())?;
        let mut params = Vec::new();
        for part in parts {
            let (key, value) = match part.split_once('=') {
                None => (token(part)?, None),
                Some((key, value)) => {
                    let value = value.trim_matches([' ', '\t']);
                    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                        Some(inner) => inner.replace('\\', ""),
                        None => value.to_owned(),
                    };
                    (token(key)?, Some(token(&value)?))
                }
            };
            params.push((key, value));
        }
        if name == EXTENSION {
            offers.push(params);
        }
    }
    Ok(offers)
}

/// The compressing side of one WebSocket.
#[derive(Debug)]
pub struct Deflater {
    level: u32,
    window_bits: u8,
    no_context_takeover: bool,
    /// Made on first use; without context takeover, dropped after each message.
    state: Option<Box<Compress>>,
}

impl Deflater {
    pub fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Self {
        Deflater {
            level: level.min(9),
            window_bits: window_bits.clamp(MIN_DEFLATE_BITS, MAX_BITS),
            no_context_takeover,
            state: None,
        }
    }

    /// Whether a compressor is kept between messages.
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// Appends `data`, compressed as one message (without the trailer), to `out`; false (and `out` as it was)
    /// when zlib failed, so the message goes out uncompressed.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let (level, bits) = (Compression::new(self.level), self.window_bits);
        let state = self
            .state
            .get_or_insert_with(|| Box::new(Compress::new_with_window_bits(level, false, bits)));
        let mut consumed = 0;
        let ok = loop {
            out.reserve(64 + (data.len() - consumed) / 2);
            let before = state.total_in();
            let rest = data.get(consumed..).unwrap_or_default();
            if state.compress_vec(rest, out, FlushCompress::Sync).is_err() {
                break false;
            }
            consumed += usize::try_from(state.total_in() - before).unwrap_or(usize::MAX);
            // Done when everything went in and zlib stopped short of the room it had: the flush is complete.
            if consumed >= data.len() && out.len() < out.capacity() {
                break true;
            }
        };
        if !ok {
            out.truncate(start);
            self.state = None;
            return false;
        }
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        if out.len() == start {
            // zlib flushes nothing when nothing came in since the last flush; RFC 7692 7.2.3.6: an empty
            // message is the one byte 0x00 (the receiver's trailer completes its empty stored block).
            out.push(0x00);
        }
        if self.no_context_takeover {
            self.state = None;
        }
        true
    }
}

/// Why a compressed message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the size limit.
    TooBig,
    /// It is not valid DEFLATE data.
    Invalid,
}

/// The decompressing side of one WebSocket.
#[derive(Debug)]
pub struct Inflater {
    window_bits: u8,
    no_context_takeover: bool,
    /// Made on first use; without context takeover, dropped after each message.
    state: Option<Box<Decompress>>,
}

impl Inflater {
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Inflater {
            window_bits: window_bits.clamp(MIN_DEFLATE_BITS, MAX_BITS),
            no_context_takeover,
            state: None,
        }
    }

    /// Whether a decompressor is kept between messages.
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// One message's payload, inflated; never more than `max` bytes (plus one step of output) are allocated,
    /// whatever the data would inflate to. After an error the context is gone with the connection.
    pub fn inflate(&mut self, data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        let bits = self.window_bits;
        let state = self
            .state
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let mut out = Vec::new();
        let mut ended = false;
        let result = 'inflate: {
            for input in [data, &TRAILER[..]] {
                let mut consumed = 0;
                while !ended {
                    if out.len() > max {
                        break 'inflate Err(InflateError::TooBig);
                    }
                    // Room for what this much input likely inflates to, then more as it proves larger: a small
                    // message costs a small buffer, and no step is larger than INFLATE_STEP.
                    let guess = out.len().max(4 * data.len() + 64);
                    out.reserve(
                        guess
                            .min(max - out.len())
                            .saturating_add(1)
                            .min(INFLATE_STEP),
                    );
                    let (before_in, before_out) = (state.total_in(), out.len());
                    let rest = input.get(consumed..).unwrap_or_default();
                    match state.decompress_vec(rest, &mut out, FlushDecompress::Sync) {
                        Ok(Status::StreamEnd) => ended = true,
                        Ok(_) => {}
                        Err(_) => break 'inflate Err(InflateError::Invalid),
                    }
                    consumed += usize::try_from(state.total_in() - before_in).unwrap_or(usize::MAX);
                    let progress = state.total_in() != before_in || out.len() != before_out;
                    if (consumed >= input.len() && out.len() < out.capacity()) || !progress {
                        break;
                    }
                }
            }
            if out.len() > max {
                break 'inflate Err(InflateError::TooBig);
            }
            Ok(out)
        };
        // A message that ended its stream (BFINAL) leaves nothing to take over; a failed one leaves nothing
        // usable.
        if self.no_context_takeover || ended || result.is_err() {
            self.state = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(header: &str, config: &DeflateConfig) -> Option<String> {
        negotiate(header, config).unwrap().map(|p| p.header())
    }

    #[test]
    fn what_ws_answers() {
        let default = DeflateConfig::default();
        // Node's ws client and Chromium offer this.
        assert_eq!(
            negotiated("permessage-deflate; client_max_window_bits", &default).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            negotiated(
                "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
                &default
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")
        );
        assert_eq!(
            negotiated("x-webkit-deflate-frame, permessage-deflate", &default).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(negotiated("x-webkit-deflate-frame", &default), None);
        let own = DeflateConfig {
            server_no_context_takeover: Some(true),
            client_no_context_takeover: true,
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(11),
            ..DeflateConfig::default()
        };
        assert_eq!(
            negotiated("permessage-deflate; client_max_window_bits", &own).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=12; client_max_window_bits=11"
            )
        );
        // Declined: a smaller server window than the options', no room for the client's window, 8 bits.
        assert_eq!(
            negotiated(
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
                &own
            ),
            None
        );
        assert_eq!(negotiated("permessage-deflate", &own), None);
        assert_eq!(
            negotiated("permessage-deflate; server_max_window_bits=8", &default),
            None
        );
        assert_eq!(
            negotiated(
                "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=\"9\"",
                &default
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
        let keep = DeflateConfig {
            server_no_context_takeover: Some(false),
            ..DeflateConfig::default()
        };
        assert_eq!(
            negotiated("permessage-deflate; server_no_context_takeover", &keep),
            None
        );
    }

    #[test]
    fn malformed_offers_are_refused() {
        for header in [
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; foo",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate;",
            "permessage-deflate; a b",
            ",",
            "",
        ] {
            assert!(
                negotiate(header, &DeflateConfig::default()).is_err(),
                "{header}"
            );
        }
    }

    fn round_trip(params: Params, messages: &[Vec<u8>]) {
        let mut deflater = params.deflater(6);
        let mut inflater = params.inflater();
        for message in messages {
            let mut wire = Vec::new();
            assert!(deflater.compress(message, &mut wire));
            assert!(!wire.ends_with(&TRAILER));
            let inflated = inflater.inflate(&wire, message.len());
            assert!(
                inflated.as_ref() == Ok(message),
                "{params:?} {} {:?}",
                message.len(),
                inflated.map(|m| m.len())
            );
            assert_eq!(deflater.holds_state(), !params.server_no_context_takeover);
            assert_eq!(inflater.holds_state(), !params.client_no_context_takeover);
        }
    }

    #[test]
    fn messages_round_trip_with_and_without_context_takeover() {
        let text = |n: usize| "chat message 42 ".repeat(n).into_bytes();
        let noise: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let messages = [text(100), text(1), Vec::new(), noise, text(10_000)];
        for (server, client, bits) in [(false, false, 15), (true, true, 9), (true, false, 12)] {
            let params = Params {
                server_no_context_takeover: server,
                client_no_context_takeover: client,
                server_max_window_bits: Some(bits),
                client_max_window_bits: Some(bits),
            };
            round_trip(params, &messages);
        }
    }

    #[test]
    fn context_takeover_makes_a_repeated_message_smaller() {
        let message =
            br#"42["chat",{"room":"lobby","text":"the same words again and again"}]"#.repeat(30);
        let mut deflater = Params::default().deflater(6);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        deflater.compress(&message, &mut first);
        deflater.compress(&message, &mut second);
        assert!(
            second.len() < first.len() / 2,
            "{} {}",
            first.len(),
            second.len()
        );
    }

    #[test]
    fn a_bomb_is_stopped_at_the_limit() {
        let mut deflater = Params::default().deflater(9);
        let mut bomb = Vec::new();
        deflater.compress(&vec![0u8; 20_000_000], &mut bomb);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let mut inflater = Params::default().inflater();
        assert_eq!(
            inflater.inflate(&bomb, 1_000_000),
            Err(InflateError::TooBig)
        );
        assert!(!inflater.holds_state());
        // Exactly at the limit is allowed.
        let mut exact = Vec::new();
        Params::default()
            .deflater(6)
            .compress(&[b'a'; 1000], &mut exact);
        assert_eq!(inflater.inflate(&exact, 1000).map(|m| m.len()), Ok(1000));
        assert_eq!(inflater.inflate(&exact, 999), Err(InflateError::TooBig));
    }

    #[test]
    fn garbage_is_invalid() {
        let mut inflater = Params::default().inflater();
        assert_eq!(
            inflater.inflate(&[0xff; 32], 1000),
            Err(InflateError::Invalid)
        );
        // A stream that ends (BFINAL) is read, and the next message starts afresh.
        let mut fin = Compress::new(Compression::default(), false);
        let mut data = Vec::with_capacity(100);
        fin.compress_vec(b"hello", &mut data, FlushCompress::Finish)
            .unwrap();
        assert_eq!(inflater.inflate(&data, 100).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(inflater.inflate(&data, 100).as_deref(), Ok(&b"hello"[..]));
    }
}
