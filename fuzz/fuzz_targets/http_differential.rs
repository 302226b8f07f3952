//! The request parser against httparse on the same bytes (`anysio::http::differential`): any disagreement not
//! listed there with its reason is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(disagreement) = anysio::http::differential::compare(data) {
        panic!("{disagreement}");
    }
});
