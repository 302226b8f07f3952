//! Conversions between Python objects and the core's types: data, ids, requests, events, configuration.
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};

use crate::core::{AnyCore, Core, Layer};
use crate::driver::virtual_conn::Output;
use crate::engineio::{self, Config, Cookie, Cors, CorsOrigin, Data, Event};
use crate::ids::{ConnId, SessionKey, SocketKey};
use crate::socketio;

pub(super) fn secs(s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub(super) fn data_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Data> {
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(Data::Text(s.to_str()?.to_owned()));
    }
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(Data::Binary(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.downcast::<PyByteArray>() {
        return Ok(Data::Binary(b.to_vec()));
    }
    Err(PyValueError::new_err(
        "data must be str, bytes or bytearray",
    ))
}

/// A recovered session as Python hands it between workers:
/// (sid, pid, rooms, last offset, missed packets as [(offset, [text, attachment, ...])]).
pub(super) type SessionTuple = (
    String,
    String,
    Vec<String>,
    String,
    Vec<(String, Vec<PyObject>)>,
);

pub(super) fn session_to_py(py: Python<'_>, s: socketio::recovery::Session) -> SessionTuple {
    use socketio::recovery::offset_text;
    let missed = s.missed.iter().map(|k| {
        let msgs = k
            .messages
            .iter()
            .map(|m| data_to_py(py, m).unbind())
            .collect();
        (offset_text(k.offset), msgs)
    });
    (
        s.sid.to_string(),
        s.pid.to_string(),
        s.rooms.iter().map(|r| r.to_string()).collect(),
        offset_text(s.last),
        missed.collect(),
    )
}

pub(super) fn session_from_py(
    py: Python<'_>,
    (sid, pid, rooms, last, missed): SessionTuple,
) -> PyResult<socketio::recovery::Session> {
    use socketio::recovery::{parse_offset, Kept, Session};
    let offset = |text: &str| {
        parse_offset(text).ok_or_else(|| PyValueError::new_err(format!("not an offset: {text:?}")))
    };
    let mut kept = Vec::with_capacity(missed.len());
    for (off, msgs) in missed {
        let messages = msgs
            .iter()
            .map(|m| data_from_py(m.bind(py)))
            .collect::<PyResult<Box<[Data]>>>()?;
        kept.push(std::sync::Arc::new(Kept {
            offset: offset(&off)?,
            messages,
        }));
    }
    Ok(Session {
        sid: sid.into(),
        pid: pid.into(),
        rooms: rooms.into_iter().map(Into::into).collect(),
        last: offset(&last)?,
        missed: kept,
    })
}

pub(super) fn data_to_py<'py>(py: Python<'py>, data: &Data) -> Bound<'py, PyAny> {
    match data {
        Data::Text(s) => PyString::new(py, s).into_any(),
        Data::Binary(b) => PyBytes::new(py, b).into_any(),
    }
}

pub(super) fn remote_to_py(py: Python<'_>, remote: Option<SocketAddr>) -> PyResult<PyObject> {
    Ok(match remote {
        Some(a) => (a.ip().to_string(), a.port())
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        None => py.None(),
    })
}

pub(super) fn request_to_py(py: Python<'_>, r: &engineio::RequestInfo) -> PyResult<PyObject> {
    let headers = PyList::empty(py);
    for (k, v) in &r.headers {
        headers.append((k.as_str(), v.as_str()))?;
    }
    let t = PyTuple::new(
        py,
        [
            r.method.as_str().into_pyobject(py)?.into_any(),
            r.path.as_str().into_pyobject(py)?.into_any(),
            r.query.as_str().into_pyobject(py)?.into_any(),
            headers.into_any(),
            remote_to_py(py, r.remote)?.into_bound(py),
        ],
    )?;
    Ok(t.into_any().unbind())
}

/// Run the application's headers hook (see `EngineCore.set_headers_hook`): `hook(initial, request, headers)`
/// returns the headers to send in their place.
pub(super) fn call_headers_hook(
    py: Python<'_>,
    hook: &PyObject,
    initial: bool,
    request: &engineio::RequestInfo,
    headers: &mut Vec<(String, String)>,
) -> PyResult<()> {
    let request = request_to_py(py, request)?;
    let out = hook.bind(py).call1((initial, request, headers.clone()))?;
    *headers = out.extract()?;
    Ok(())
}

/// JSON text from Python. A string that came in through a JSON escape may hold a lone surrogate (JSON.parse
/// accepts them, and so does the decoder): not UTF-8, so it goes out as the escape it came in as, which is what
/// JSON.stringify writes for one.
pub(super) fn json_text<'a>(s: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    if let Ok(text) = s.to_str() {
        return Ok(Cow::Borrowed(text));
    }
    let encoded = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
    Ok(Cow::Owned(escape_surrogates(
        encoded.downcast::<PyBytes>()?.as_bytes(),
    )))
}

/// JSON text as str, or as UTF-8 bytes (what pydantic's serializers write).
pub(super) fn json_arg<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, str>> {
    if let Ok(s) = obj.downcast::<PyString>() {
        return json_text(s);
    }
    let bytes = obj.downcast::<PyBytes>()?.as_bytes();
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// UTF-8 with surrogates encoded as if they were characters (`ED A0..BF 80..BF`, which valid UTF-8 never has)
/// to text with `\uXXXX` in their place.
pub(super) fn escape_surrogates(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i..] {
            [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF, ..] => {
                let unit = 0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
                out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

// The three ids cross as plain integers.
macro_rules! int_id {
    ($($id:ty),*) => {$(
        impl<'py> IntoPyObject<'py> for $id {
            type Target = PyInt;
            type Output = Bound<'py, PyInt>;
            type Error = std::convert::Infallible;

            fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
                self.0.into_pyobject(py)
            }
        }

        impl<'py> FromPyObject<'py> for $id {
            fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
                ob.extract().map(Self)
            }
        }
    )*};
}
int_id!(ConnId, SessionKey, SocketKey);

pub(super) fn os_error(e: std::io::Error) -> PyErr {
    PyOSError::new_err(e.to_string())
}

/// Binary attachments from a list of bytes; None and an empty list (an ack's usual case) cost no extraction.
pub(super) fn attachments_from_py(list: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Vec<u8>>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list.downcast::<PyList>().is_ok_and(|l| l.is_empty()) {
        return Ok(Vec::new());
    }
    let list: Vec<Bound<'_, PyAny>> = list.extract()?;
    list.iter()
        .map(|b| match data_from_py(b)? {
            Data::Binary(b) => Ok(b),
            Data::Text(_) => Err(PyValueError::new_err("attachments must be bytes")),
        })
        .collect()
}

pub(super) fn attachments_to_py<'py>(
    py: Python<'py>,
    list: &[Vec<u8>],
) -> PyResult<Bound<'py, PyAny>> {
    if list.is_empty() {
        return Ok(py.None().into_bound(py));
    }
    Ok(PyList::new(py, list.iter().map(|b| PyBytes::new(py, b)))?.into_any())
}

/// An event as the tuple Python unpacks.
pub(super) trait ToPy {
    fn to_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>>;
}

pub(super) fn tuple<'py, T: IntoPyObject<'py, Target = PyTuple, Output = Bound<'py, PyTuple>>>(
    py: Python<'py>,
    t: T,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(t.into_pyobject(py).map_err(Into::into)?.into_any())
}

impl ToPy for Event {
    fn to_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        match self {
            Event::Open {
                key,
                sid,
                transport,
                request,
            } => {
                let request = request_to_py(py, &request)?;
                tuple(py, ("open", key, &*sid, transport.name(), request))
            }
            Event::Message { key, data } => tuple(py, ("message", key, data_to_py(py, &data))),
            Event::Upgrade { key } => tuple(py, ("upgrade", key)),
            Event::Close { key, reason } => tuple(py, ("close", key, reason.as_str())),
            Event::Handshake { conn, request } => {
                tuple(py, ("handshake", conn, request_to_py(py, &request)?))
            }
            Event::Request {
                conn,
                request,
                body,
            } => {
                let request = request_to_py(py, &request)?;
                tuple(py, ("request", conn, request, PyBytes::new(py, &body)))
            }
            Event::ConnectionError {
                code,
                detail,
                request,
                ..
            } => {
                let request = request_to_py(py, &request)?;
                tuple(py, ("connection_error", code as u8, detail, request))
            }
            Event::ProtocolError {
                remote, message, ..
            } => tuple(py, ("error", message, remote_to_py(py, remote)?)),
        }
    }
}

impl ToPy for socketio::Event {
    fn to_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        use socketio::Event as E;
        match self {
            E::Open {
                client,
                eio_sid,
                request,
            } => {
                let request = request_to_py(py, &request)?;
                tuple(py, ("open", client, &*eio_sid, "", request))
            }
            E::Connect {
                client,
                socket,
                nsp,
                sid,
                auth,
            } => tuple(py, ("connect", socket, client, &*nsp, &*sid, auth)),
            E::Event {
                socket,
                name,
                args,
                argc,
                id,
                attachments,
            } => {
                let attachments = attachments_to_py(py, &attachments)?;
                tuple(py, ("event", socket, name, args, argc, id, attachments))
            }
            E::Ack {
                socket,
                id,
                data,
                attachments,
            } => {
                let attachments = attachments_to_py(py, &attachments)?;
                tuple(py, ("ack", socket, data, id, attachments))
            }
            E::Disconnect { socket, reason } => tuple(py, ("disconnect", socket, reason.as_str())),
            E::Close { client, reason } => tuple(py, ("close", client, reason.as_str())),
            E::ProtocolError {
                remote, message, ..
            } => tuple(py, ("error", message, remote_to_py(py, remote)?)),
            E::Expired { pid } => tuple(py, ("expired", &*pid)),
            E::Engine(ev) => ev.to_py(py),
        }
    }
}

/// The application's events waiting in `core`, appended to `out`.
pub(super) fn drain_events<L: Layer>(
    py: Python<'_>,
    core: &mut Core<L>,
    out: &Bound<'_, PyList>,
) -> PyResult<()>
where
    L::Event: ToPy,
{
    while let Some(ev) = core.poll_event() {
        out.append(ev.to_py(py)?)?;
    }
    Ok(())
}

pub(super) fn drain_any(
    py: Python<'_>,
    core: &mut AnyCore,
    out: &Bound<'_, PyList>,
) -> PyResult<()> {
    match core {
        AnyCore::EngineIo(c) => drain_events(py, c, out),
        AnyCore::SocketIo(c) => drain_events(py, c, out),
    }
}

/// Seconds from now until `at`.
pub(super) fn seconds_until(at: Option<Instant>) -> Option<f64> {
    at.map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn config_from_py(
    ping_interval: f64,
    ping_timeout: f64,
    upgrade_timeout: f64,
    max_payload: usize,
    transports: Vec<String>,
    allow_upgrades: bool,
    path: &str,
    cors_origins: Option<Vec<String>>,
    cors_credentials: bool,
    cookie: Option<Cookie>,
    max_connections: Option<usize>,
    defer_handshakes: bool,
    sid_prefix: &str,
    max_buffered: usize,
    serve_other_paths: bool,
) -> PyResult<Config> {
    for t in &transports {
        if t != "polling" && t != "websocket" {
            return Err(PyValueError::new_err(format!("unknown transport {t:?}")));
        }
    }
    let mut config = Config {
        ping_interval: secs(ping_interval)?,
        ping_timeout: secs(ping_timeout)?,
        upgrade_timeout: secs(upgrade_timeout)?,
        max_payload,
        polling: transports.iter().any(|t| t == "polling"),
        websocket: transports.iter().any(|t| t == "websocket"),
        allow_upgrades,
        cors: cors_origins.map(|origins| Cors {
            origin: if origins.iter().any(|o| o == "*") {
                CorsOrigin::Any
            } else {
                CorsOrigin::List(origins)
            },
            credentials: cors_credentials,
        }),
        cookie,
        max_connections,
        defer_handshakes,
        sid_prefix: sid_prefix.to_owned(),
        max_buffered,
        serve_other_paths,
        ..Config::default()
    };
    config.set_path(path);
    Ok(config)
}

pub(super) fn remote_from_py(remote: Option<(String, u16)>) -> Option<SocketAddr> {
    let (host, port) = remote?;
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

pub(super) fn output_to_py(py: Python<'_>, output: Output) -> PyResult<Bound<'_, PyAny>> {
    Ok(match output {
        Output::Response {
            status,
            headers,
            body,
        } => ("response", status, headers, PyBytes::new(py, &body))
            .into_pyobject(py)?
            .into_any(),
        Output::Accept { headers } => ("accept", headers).into_pyobject(py)?.into_any(),
        Output::Message(data) => {
            // The ASGI event as the writer sends it: a dict built here costs less than a tuple taken apart in
            // Python and a dict built there, once per message.
            let event = PyDict::new(py);
            event.set_item(intern!(py, "type"), intern!(py, "websocket.send"))?;
            let key = match data {
                Data::Text(_) => intern!(py, "text"),
                Data::Binary(_) => intern!(py, "bytes"),
            };
            event.set_item(key, data_to_py(py, &data))?;
            event.into_any()
        }
        Output::Close(code) => ("close", code).into_pyobject(py)?.into_any(),
    })
}
