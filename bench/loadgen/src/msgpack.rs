//! socket.io-msgpack-parser for the load generator (`--parser msgpack`): the scenarios keep speaking Socket.IO's
//! text form, and each packet is turned into (and back from) the binary message a msgpack client sends, with
//! anysio's own codec, so the client does per packet the work such a client does.
use anysio::socketio::msgpack::{self, OutId};
use anysio::socketio::packet::{self, Packet};

/// A text packet (`2<id>["echo",{...}]`, `0` for CONNECT) as the msgpack message; None when it is no packet.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let p = packet::decode(text).ok()?;
    let id = p.id.map(OutId::Number);
    msgpack::encode(p.kind, &p.nsp, id, p.data.as_deref(), &[]).ok()
}

/// A msgpack message as the text packet the scenarios read; None when it is no packet.
pub fn decode(bytes: &[u8]) -> Option<String> {
    let d = msgpack::decode(bytes).ok()?;
    let data = match d.event {
        Some(e) => Some(match e.name {
            None => e.args,
            Some(name) => {
                let name = serde_json::to_string(&name).ok()?;
                match e.args.strip_prefix('[') {
                    Some("]") | None => format!("[{name}]"),
                    Some(rest) => format!("[{name},{rest}"),
                }
            }
        }),
        None => d.packet.data,
    };
    let p = Packet { data, ..d.packet };
    let mut out = String::new();
    packet::encode(&p, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_through_msgpack() {
        for text in [
            "0",
            r#"0{"sid":"abc"}"#,
            r#"212["echo",{"id":12,"text":"xx","ts":1733333333.123456}]"#,
            r#"312[{"id":12,"text":"xx","ts":1733333333.123456}]"#,
            r#"2["bcast"]"#,
        ] {
            let bytes = encode(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(decode(&bytes).as_deref(), Some(text));
        }
        assert_eq!(encode("9"), None);
        assert_eq!(decode(b"\xc1"), None);
    }
}
