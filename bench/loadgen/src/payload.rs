//! The argument of `echo` and `bcast` events: a JSON object of about `--payload` bytes,
//! `{"id":<n>,"text":"xx…","ts":<unix seconds, microseconds>}`, the shape of the servers' `Echo` type.
//!
//! `id` is the event's ack id (echo) or sequence number (bcast), `ts` the time it was sent, so the object an ack
//! must carry back is rebuilt from what the client already keeps per event (its id and send `Instant`). An ack is
//! checked byte for byte first; a server that re-encodes the object (a typed handler returns a new value) may
//! space or spell numbers differently, so on a mismatch both are parsed and compared as JSON values, numbers by
//! value: such acks are counted as `reencoded`, not as bad.
use std::fmt::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The bytes of the object besides its text, with a 6-digit id and a 17-character timestamp.
const OVERHEAD: usize = r#"{"id":123456,"text":"","ts":1733333333.123456}"#.len();

pub struct Payload {
    text: String,
    origin: Instant,
    origin_unix_us: u128,
}

/// How an ack's arguments compare with what was sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Exact,
    Reencoded,
    Wrong,
}

impl Payload {
    /// An object of about `size` bytes (its text at least one character).
    pub fn new(size: usize) -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Payload {
            text: "x".repeat(size.saturating_sub(OVERHEAD).max(1)),
            origin: Instant::now(),
            origin_unix_us: unix.as_micros(),
        }
    }

    /// Append the object for event `id` sent at `at`.
    pub fn write(&self, out: &mut String, id: u64, at: Instant) {
        let us = self.origin_unix_us + at.saturating_duration_since(self.origin).as_micros();
        // Shortest round-trip form, as Python's repr and JavaScript's Number#toString print it.
        let ts = us as f64 / 1e6;
        let _ = write!(out, r#"{{"id":{id},"text":"{}","ts":{ts}}}"#, self.text);
    }

    /// The event packet's data: `["<event>",<object>]`.
    pub fn event(&self, out: &mut String, event: &str, id: u64, at: Instant) {
        let _ = write!(out, "[\"{event}\",");
        self.write(out, id, at);
        out.push(']');
    }

    /// Compare an ack's data (`[<object>]`) with the object of event `id` sent at `at`; `scratch` is reused.
    pub fn check(&self, ack: &[u8], id: u64, at: Instant, scratch: &mut String) -> Check {
        scratch.clear();
        scratch.push('[');
        self.write(scratch, id, at);
        scratch.push(']');
        if ack == scratch.as_bytes() {
            return Check::Exact;
        }
        match (
            serde_json::from_slice::<Value>(ack),
            serde_json::from_str::<Value>(scratch),
        ) {
            (Ok(a), Ok(b)) if same(&a, &b) => Check::Reencoded,
            _ => Check::Wrong,
        }
    }
}

/// JSON equality with numbers compared by value (`1` and `1.0` are the same number).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_has_the_size_and_shape_asked() {
        let p = Payload::new(100);
        let mut s = String::new();
        p.write(&mut s, 123_456, p.origin + Duration::from_micros(250_001));
        assert!((90..=110).contains(&s.len()), "{} bytes: {s}", s.len());
        let v: Value = serde_json::from_str(&s).unwrap_or_default();
        assert_eq!(v["id"], 123_456);
        assert!(v["text"].as_str().is_some_and(|t| t.len() > 40));
        assert!(v["ts"].as_f64().is_some_and(|t| t > 1.6e9));
    }

    #[test]
    fn acks_are_checked_by_value() {
        let p = Payload::new(100);
        let at = p.origin + Duration::from_millis(3);
        let (mut exact, mut scratch) = (String::from("["), String::new());
        p.write(&mut exact, 7, at);
        exact.push(']');
        assert_eq!(p.check(exact.as_bytes(), 7, at, &mut scratch), Check::Exact);
        let spaced = exact.replace(':', ": ").replace(",\"", ", \"");
        assert_eq!(
            p.check(spaced.as_bytes(), 7, at, &mut scratch),
            Check::Reencoded
        );
        let reordered: Value = serde_json::from_str(&exact).unwrap_or_default();
        let obj = &reordered[0];
        let swapped = format!(
            r#"[{{"ts":{},"text":{},"id":7.0}}]"#,
            obj["ts"], obj["text"]
        );
        assert_eq!(
            p.check(swapped.as_bytes(), 7, at, &mut scratch),
            Check::Reencoded
        );
        assert_eq!(p.check(exact.as_bytes(), 8, at, &mut scratch), Check::Wrong);
        assert_eq!(p.check(b"[\"x\"]", 7, at, &mut scratch), Check::Wrong);
        assert_eq!(p.check(b"[", 7, at, &mut scratch), Check::Wrong);
    }
}
