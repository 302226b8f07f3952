//! The Redis adapter codec (`adapter::redis`) for Python, behind the `python` feature: registered into
//! `anysio._native` by `register`.
//!
//! A broadcast heard from Redis is decoded in one call into what `EngineCore.broadcast_event` takes
//! (`redis_broadcast`). Every other message crosses as Socket.IO's JSON-with-attachments form of Node's object
//! (`redis_decode` / `redis_encode`): Python reads and writes dicts shaped as Node's (`uid`, `requestId`,
//! `type`, `opts`, ...), and the codec checks them and writes Node's bytes (msgpack or JSON, Node's member
//! order).
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use rmp::encode::ByteBuf;

use super::redis::{
    json_to_value, read_msgpack, value_to_json, write_msgpack, Broadcast, BroadcastOpts,
    ClusterBody, ClusterMessage, DecodeError, Encoding, Flags, Packet, Request, Response, Scalar,
};

fn value_error(e: DecodeError) -> PyErr {
    PyValueError::new_err(e.0)
}

fn bytes_list<'py>(py: Python<'py>, items: &[Vec<u8>]) -> Vec<Bound<'py, PyBytes>> {
    items.iter().map(|b| PyBytes::new(py, b)).collect()
}

/// A broadcast for local delivery: `(uid, nsp, rooms, except, volatile, compress, data_json, attachments)`.
#[allow(clippy::type_complexity)]
#[pyfunction]
fn redis_broadcast<'py>(
    py: Python<'py>,
    data: &[u8],
) -> PyResult<(
    String,
    String,
    Vec<String>,
    Vec<String>,
    bool,
    bool,
    String,
    Vec<Bound<'py, PyBytes>>,
)> {
    let b = Broadcast::decode(data).map_err(value_error)?;
    let local = b.local().map_err(value_error)?;
    let atts = bytes_list(py, &local.attachments);
    Ok((
        b.uid,
        local.nsp,
        local.rooms,
        local.except,
        local.volatile,
        local.compress,
        local.data_json,
        atts,
    ))
}

/// A broadcast in one call, from what the Socket.IO layer already has for local delivery (the event's JSON text
/// and attachments): Node's bytes for the classic `[uid, {type: 2, data, nsp}, {rooms, except, flags}]`, or with
/// `sharded` the sharded adapter's `{type: 3, data: {packet: {type: 2, data}, opts}, uid, nsp}` (JSON, or msgpack
/// when the event holds binary).
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (uid, nsp, data_json, attachments, rooms, except_rooms, volatile, sharded = false, compress = true))]
fn redis_encode_broadcast<'py>(
    py: Python<'py>,
    uid: &str,
    nsp: &str,
    data_json: &str,
    attachments: Vec<PyBackedBytes>,
    rooms: Vec<String>,
    except_rooms: Vec<String>,
    volatile: bool,
    sharded: bool,
    compress: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let atts: Vec<Vec<u8>> = attachments.iter().map(|b| b.to_vec()).collect();
    // The sharded adapter publishes its packet before socket.io sets `nsp` on it.
    let packet_nsp = if sharded { None } else { Some(nsp) };
    let packet = Packet::event(packet_nsp, data_json, &atts).map_err(value_error)?;
    let mut flags = Flags::default();
    if volatile {
        flags.set("volatile", Scalar::Bool(true));
    }
    if !compress {
        flags.set("compress", Scalar::Bool(false));
    }
    let opts = BroadcastOpts::new(rooms, except_rooms, Some(flags));
    let bytes = if sharded {
        let body = ClusterBody::Broadcast {
            packet,
            request_id: None,
            opts,
        };
        ClusterMessage::new(uid, nsp, body).encode()
    } else {
        let uid = uid.to_owned();
        Broadcast { uid, packet, opts }.encode()
    };
    Ok(PyBytes::new(py, &bytes))
}

/// A sharded adapter's BROADCAST without ack, for local delivery: `(uid, nsp, rooms, except, volatile,
/// compress, data_json, attachments)`; None for any other message (decode those with `redis_decode("cluster", ...)`).
#[allow(clippy::type_complexity)]
#[pyfunction]
fn redis_cluster_broadcast<'py>(
    py: Python<'py>,
    data: &[u8],
) -> PyResult<
    Option<(
        String,
        String,
        Vec<String>,
        Vec<String>,
        bool,
        bool,
        String,
        Vec<Bound<'py, PyBytes>>,
    )>,
> {
    let m = ClusterMessage::decode(data).map_err(value_error)?;
    if let ClusterBody::Broadcast {
        request_id: Some(_),
        ..
    } = m.body
    {
        return Ok(None);
    }
    let Some(local) = m.local_broadcast() else {
        return Ok(None);
    };
    let local = local.map_err(value_error)?;
    let atts = bytes_list(py, &local.attachments);
    Ok(Some((
        m.uid,
        local.nsp,
        local.rooms,
        local.except,
        local.volatile,
        local.compress,
        local.data_json,
        atts,
    )))
}

/// The message as msgpack, whatever its encoding on the wire.
fn decoded_as_msgpack(kind: &str, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    Ok(match kind {
        "broadcast" => Broadcast::decode(data)?.encode(),
        "request" => {
            let mut r = Request::decode(data)?;
            r.encoding = Encoding::Msgpack;
            r.encode()
        }
        "response" => {
            let mut r = Response::decode(data)?;
            r.encoding = Encoding::Msgpack;
            r.encode()
        }
        "cluster" => {
            let mut m = ClusterMessage::decode(data)?;
            m.encoding = Encoding::Msgpack;
            m.encode()
        }
        _ => return Err(DecodeError(format!("unknown message kind {kind:?}"))),
    })
}

/// Decodes a message (`kind`: "broadcast", "request", "response" or "cluster") into Socket.IO's form of Node's
/// object: `(json_text, attachments)`. Raises ValueError for a malformed message.
#[pyfunction]
fn redis_decode<'py>(
    py: Python<'py>,
    kind: &str,
    data: &[u8],
) -> PyResult<(String, Vec<Bound<'py, PyBytes>>)> {
    let packed = decoded_as_msgpack(kind, data).map_err(value_error)?;
    let value = read_msgpack(&packed).map_err(value_error)?;
    let mut attachments = Vec::new();
    let text = value_to_json(&value, Some(&mut attachments)).map_err(value_error)?;
    Ok((text, bytes_list(py, &attachments)))
}

/// Encodes a message given in Socket.IO's form of Node's object as Node encodes it. Raises ValueError when the
/// object is not a valid message of that kind.
#[pyfunction]
fn redis_encode<'py>(
    py: Python<'py>,
    kind: &str,
    json: &str,
    attachments: Vec<PyBackedBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    let atts: Vec<Vec<u8>> = attachments.iter().map(|b| b.to_vec()).collect();
    let value = json_to_value(json, Some(&atts)).map_err(value_error)?;
    let mut buf = ByteBuf::new();
    write_msgpack(&mut buf, &value);
    let packed = buf.into_vec();
    let out = match kind {
        "broadcast" => Broadcast::decode(&packed).map(|b| b.encode()),
        "request" => Request::decode(&packed)
            .map(|r| Request::new(r.uid.as_deref(), r.request_id.as_deref(), r.body).encode()),
        "response" => {
            Response::decode(&packed).map(|r| Response::new(&r.request_id, r.body).encode())
        }
        "cluster" => ClusterMessage::decode(&packed)
            .map(|m| ClusterMessage::new(&m.uid, &m.nsp, m.body).encode()),
        _ => Err(DecodeError(format!("unknown message kind {kind:?}"))),
    }
    .map_err(value_error)?;
    Ok(PyBytes::new(py, &out))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(redis_broadcast, m)?)?;
    m.add_function(wrap_pyfunction!(redis_cluster_broadcast, m)?)?;
    m.add_function(wrap_pyfunction!(redis_encode_broadcast, m)?)?;
    m.add_function(wrap_pyfunction!(redis_decode, m)?)?;
    m.add_function(wrap_pyfunction!(redis_encode, m)?)?;
    Ok(())
}
