//! Deadlines as the sans-IO layers report them: an `Option<Instant>` each, None when nothing is due.
use std::time::Instant;

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
