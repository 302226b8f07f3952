//! The one file that knows Python: the `anysio._native` module.
//!
//! Errors cross here once: OS errors become `OSError`, bad arguments `ValueError`. Events cross as tuples
//! (cheaper to build than objects, and the Python side unpacks them at once):
//! `("open", key, sid, transport, request)`, `("message", key, str | bytes)`, `("upgrade", key)`,
//! `("close", key, reason)`, `("handshake", conn, request)`, `("error", message, remote)`.
use std::borrow::Cow;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};

use crate::driver::Driver;
use crate::engineio::{self, Config, Cookie, Cors, CorsOrigin, Data, ErrorCode, Event};
use crate::socketio::{self, SocketIo};

fn secs(s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn data_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Data> {
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

fn data_to_py<'py>(py: Python<'py>, data: &Data) -> Bound<'py, PyAny> {
    match data {
        Data::Text(s) => PyString::new(py, s).into_any(),
        Data::Binary(b) => PyBytes::new(py, b).into_any(),
    }
}

fn remote_to_py(py: Python<'_>, remote: Option<SocketAddr>) -> PyResult<PyObject> {
    Ok(match remote {
        Some(a) => (a.ip().to_string(), a.port())
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        None => py.None(),
    })
}

fn request_to_py(py: Python<'_>, r: &engineio::RequestInfo) -> PyResult<PyObject> {
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

/// JSON text from Python. A string that came in through a JSON escape may hold a lone surrogate (JSON.parse
/// accepts them, and so does the decoder): not UTF-8, so it goes out as the escape it came in as, which is what
/// JSON.stringify writes for one.
fn json_text<'a>(s: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    if let Ok(text) = s.to_str() {
        return Ok(Cow::Borrowed(text));
    }
    let encoded = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
    Ok(Cow::Owned(escape_surrogates(
        encoded.downcast::<PyBytes>()?.as_bytes(),
    )))
}

/// JSON text as str, or as UTF-8 bytes (what pydantic's serializers write).
fn json_arg<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, str>> {
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
fn escape_surrogates(bytes: &[u8]) -> String {
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

/// The server core: the sockets, the Engine.IO session table and timers, and (with `socketio=True`) the
/// Socket.IO namespaces, sockets and rooms.
// Not `unsendable`: a server sits in reference cycles (its sessions point back at it), and the cycle collector
// may free it on any thread; an unsendable core would then be leaked with an error instead of dropped.
#[pyclass(module = "anysio._native")]
pub struct EngineCore {
    driver: Driver,
    sio: Option<SocketIo>,
}

fn no_socketio() -> PyErr {
    PyValueError::new_err("this core was created without socketio=True")
}

fn attachments_from_py(list: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<Vec<u8>>> {
    list.iter()
        .map(|b| match data_from_py(b)? {
            Data::Binary(b) => Ok(b),
            Data::Text(_) => Err(PyValueError::new_err("attachments must be bytes")),
        })
        .collect()
}

fn attachments_to_py<'py>(py: Python<'py>, list: &[Vec<u8>]) -> PyResult<Bound<'py, PyAny>> {
    if list.is_empty() {
        return Ok(py.None().into_bound(py));
    }
    Ok(PyList::new(py, list.iter().map(|b| PyBytes::new(py, b)))?.into_any())
}

fn engine_event_to_py<'py>(py: Python<'py>, ev: Event) -> PyResult<Bound<'py, PyAny>> {
    Ok(match ev {
        Event::Open {
            key,
            sid,
            transport,
            request,
        } => (
            "open",
            key,
            &*sid,
            transport.name(),
            request_to_py(py, &request)?,
        )
            .into_pyobject(py)?
            .into_any(),
        Event::Message { key, data } => ("message", key, data_to_py(py, &data))
            .into_pyobject(py)?
            .into_any(),
        Event::Upgrade { key } => ("upgrade", key).into_pyobject(py)?.into_any(),
        Event::Close { key, reason } => ("close", key, reason.as_str())
            .into_pyobject(py)?
            .into_any(),
        Event::Handshake { conn, request } => ("handshake", conn, request_to_py(py, &request)?)
            .into_pyobject(py)?
            .into_any(),
        Event::Request {
            conn,
            request,
            body,
        } => (
            "request",
            conn,
            request_to_py(py, &request)?,
            PyBytes::new(py, &body),
        )
            .into_pyobject(py)?
            .into_any(),
        Event::ProtocolError {
            remote, message, ..
        } => ("error", message, remote_to_py(py, remote)?)
            .into_pyobject(py)?
            .into_any(),
    })
}

fn sio_event_to_py<'py>(py: Python<'py>, ev: socketio::Event) -> PyResult<Bound<'py, PyAny>> {
    use socketio::Event as E;
    Ok(match ev {
        E::Open {
            client,
            eio_sid,
            request,
        } => ("open", client, &*eio_sid, "", request_to_py(py, &request)?)
            .into_pyobject(py)?
            .into_any(),
        E::Connect {
            client,
            socket,
            nsp,
            sid,
            auth,
        } => ("connect", socket, client, &*nsp, &*sid, auth)
            .into_pyobject(py)?
            .into_any(),
        E::Event {
            socket,
            name,
            args,
            argc,
            id,
            attachments,
        } => (
            "event",
            socket,
            name,
            args,
            argc,
            id,
            attachments_to_py(py, &attachments)?,
        )
            .into_pyobject(py)?
            .into_any(),
        E::Ack {
            socket,
            id,
            data,
            attachments,
        } => (
            "ack",
            socket,
            data,
            id,
            attachments_to_py(py, &attachments)?,
        )
            .into_pyobject(py)?
            .into_any(),
        E::Disconnect { socket, reason } => ("disconnect", socket, reason.as_str())
            .into_pyobject(py)?
            .into_any(),
        E::Close { client, reason } => ("close", client, reason.as_str())
            .into_pyobject(py)?
            .into_any(),
        E::Engine(ev) => engine_event_to_py(py, ev)?,
    })
}

#[pymethods]
impl EngineCore {
    #[new]
    #[pyo3(signature = (*, ping_interval=25.0, ping_timeout=20.0, upgrade_timeout=10.0, max_payload=1_000_000,
        transports=vec!["polling".to_owned(), "websocket".to_owned()], allow_upgrades=true, path="/engine.io",
        cors_origins=None, cors_credentials=false, cookie_name=None, cookie_path="/", cookie_http_only=true,
        cookie_same_site=Some("Lax".to_owned()), max_connections=None, defer_handshakes=false, sid_prefix="",
        max_buffered=16*1024*1024, socketio=false, connect_timeout=45.0, serve_other_paths=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        ping_interval: f64,
        ping_timeout: f64,
        upgrade_timeout: f64,
        max_payload: usize,
        transports: Vec<String>,
        allow_upgrades: bool,
        path: &str,
        cors_origins: Option<Vec<String>>,
        cors_credentials: bool,
        cookie_name: Option<String>,
        cookie_path: &str,
        cookie_http_only: bool,
        cookie_same_site: Option<String>,
        max_connections: Option<usize>,
        defer_handshakes: bool,
        sid_prefix: &str,
        max_buffered: usize,
        socketio: bool,
        connect_timeout: f64,
        serve_other_paths: bool,
    ) -> PyResult<Self> {
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
            cookie: cookie_name.map(|name| Cookie {
                name,
                path: cookie_path.to_owned(),
                http_only: cookie_http_only,
                same_site: cookie_same_site,
            }),
            max_connections,
            defer_handshakes,
            sid_prefix: sid_prefix.to_owned(),
            max_buffered,
            serve_other_paths,
            ..Config::default()
        };
        config.set_path(path);
        let driver = Driver::new(engineio::Engine::new(config))
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let sio = match socketio {
            true => Some(SocketIo::new(secs(connect_timeout)?)),
            false => None,
        };
        Ok(EngineCore { driver, sio })
    }

    /// Listen on a bound, listening socket whose descriptor Python gives up (`socket.detach()`).
    fn listen_fd(&mut self, fd: i32) -> PyResult<(String, u16)> {
        // SAFETY: the caller detached `fd` from its Python socket, so this is its only owner from now on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let bound = self
            .driver
            .listen_fd(fd)
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok((bound.ip().to_string(), bound.port()))
    }

    /// Serve as worker `index` of several sharing one port (sids carry the index; see driver/workers.rs).
    fn set_worker(&mut self, index: u32) {
        self.driver.set_worker(index);
    }

    /// Take over a client connection handed over by another worker (a descriptor from `socket.recv_fds`).
    fn adopt(&mut self, fd: i32) -> PyResult<()> {
        // SAFETY: `recv_fds` created this descriptor for us and Python keeps no other handle to it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        self.driver
            .adopt(fd)
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        self.driver.request_flush();
        Ok(())
    }

    fn fileno(&self) -> i32 {
        self.driver.fd()
    }

    /// Seconds until the next timer, or None.
    fn next_timeout(&self) -> Option<f64> {
        let sio = self.sio.as_ref().and_then(SocketIo::next_timeout);
        let at = match (self.driver.next_timeout(), sio) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        at.map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64())
    }

    /// Do all ready I/O and due timers; return the events for the application.
    fn turn<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let now = Instant::now();
        self.driver
            .turn(now)
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let out = PyList::empty(py);
        // Python sends each descriptor to its owner and closes it.
        for (fd, owner) in self.driver.take_handoffs() {
            out.append(("handoff", fd, owner))?;
        }
        match &mut self.sio {
            None => {
                while let Some(ev) = self.driver.engine.poll_event() {
                    out.append(engine_event_to_py(py, ev)?)?;
                }
            }
            Some(sio) => {
                sio.pump(&mut self.driver.engine, now);
                sio.handle_timeout(&mut self.driver.engine, now);
                // Closing sessions above produces engine events of its own.
                sio.pump(&mut self.driver.engine, now);
                // Answers the layer wrote itself (CONNECT_ERROR, closes) go out in this turn.
                self.driver.flush(now);
                while let Some(ev) = sio.poll_event() {
                    out.append(sio_event_to_py(py, ev)?)?;
                }
            }
        }
        Ok(out)
    }

    fn send(&mut self, key: u64, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let data = data_from_py(data)?;
        let sent = self.driver.engine.send(key, data);
        self.driver.request_flush();
        Ok(sent)
    }

    fn broadcast(&mut self, keys: Vec<u64>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data_from_py(data)?;
        self.driver.engine.broadcast(&keys, data);
        self.driver.request_flush();
        Ok(())
    }

    fn close(&mut self, key: u64) {
        self.driver.engine.close(key, Instant::now());
        self.driver.request_flush();
    }

    #[pyo3(signature = (conn, sid=None))]
    fn accept_handshake(&mut self, conn: u64, sid: Option<String>) {
        self.driver
            .engine
            .accept_handshake(conn, sid, Instant::now());
        self.driver.request_flush();
    }

    #[pyo3(signature = (conn, code, message=None))]
    fn refuse_handshake(&mut self, conn: u64, code: u8, message: Option<&str>) -> PyResult<()> {
        let code = ErrorCode::from_code(code)
            .ok_or_else(|| PyValueError::new_err(format!("unknown error code {code}")))?;
        self.driver
            .engine
            .refuse_handshake(conn, code, message, Instant::now());
        self.driver.request_flush();
        Ok(())
    }

    /// Answer a "request" event (a path outside Engine.IO's).
    #[pyo3(signature = (conn, status, headers, body))]
    fn respond(&mut self, conn: u64, status: u16, headers: Vec<(String, String)>, body: Vec<u8>) {
        self.driver
            .engine
            .respond_app(conn, status, &headers, body, Instant::now());
        self.driver.request_flush();
    }

    fn sid_of(&self, key: u64) -> Option<String> {
        self.driver.engine.sid_of(key).map(|s| s.to_string())
    }

    fn transport_of(&self, key: u64) -> Option<&'static str> {
        self.driver.engine.transport_of(key).map(|t| t.name())
    }

    #[getter]
    fn session_count(&self) -> usize {
        self.driver.engine.session_count()
    }

    #[getter]
    fn connection_count(&self) -> usize {
        self.driver.connection_count()
    }

    /// Close every session ("server shutting down") and every socket.
    fn shutdown(&mut self) {
        self.driver.close_all(Instant::now());
    }

    // ---- the Socket.IO layer's calls; sockets are named by the keys of the "connect" event ----

    fn add_namespace(&mut self, nsp: &str) -> PyResult<()> {
        self.sio
            .as_mut()
            .ok_or_else(no_socketio)?
            .add_namespace(nsp);
        Ok(())
    }

    fn accept(&mut self, socket: u64) -> PyResult<bool> {
        let sio = self.sio.as_mut().ok_or_else(no_socketio)?;
        let ok = sio.accept(socket, &mut self.driver.engine);
        self.driver.request_flush();
        Ok(ok)
    }

    fn refuse(&mut self, socket: u64, data_json: &Bound<'_, PyString>) -> PyResult<()> {
        let sio = self.sio.as_mut().ok_or_else(no_socketio)?;
        sio.refuse(socket, &json_text(data_json)?, &mut self.driver.engine);
        self.driver.request_flush();
        Ok(())
    }

    #[pyo3(signature = (socket, close=false))]
    fn disconnect(&mut self, socket: u64, close: bool) -> PyResult<()> {
        let sio = self.sio.as_mut().ok_or_else(no_socketio)?;
        sio.disconnect(socket, close, &mut self.driver.engine, Instant::now());
        sio.pump(&mut self.driver.engine, Instant::now());
        self.driver.request_flush();
        Ok(())
    }

    /// One socket: an EVENT (with an ack id when `id` is given), or with `ack_reply` the ACK for `id`.
    #[pyo3(signature = (socket, data_json, attachments=vec![], id=None, ack_reply=false))]
    fn emit_to(
        &mut self,
        socket: u64,
        data_json: &Bound<'_, PyAny>,
        attachments: Vec<Bound<'_, PyAny>>,
        id: Option<u64>,
        ack_reply: bool,
    ) -> PyResult<bool> {
        let sio = self.sio.as_mut().ok_or_else(no_socketio)?;
        let attachments = attachments_from_py(attachments)?;
        let ok = sio.emit_to(
            socket,
            &json_arg(data_json)?,
            attachments,
            id,
            ack_reply,
            &mut self.driver.engine,
        );
        self.driver.request_flush();
        Ok(ok)
    }

    /// A broadcast, encoded once; returns the keys of the sockets it reached.
    /// With `volatile`, sockets not ready to send right now miss the event (no ack id then).
    #[pyo3(signature = (nsp, data_json, rooms=vec![], except_rooms=vec![], attachments=vec![], id=None, volatile=false))]
    #[allow(clippy::too_many_arguments)]
    fn broadcast_event(
        &mut self,
        nsp: &str,
        data_json: &Bound<'_, PyAny>,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        attachments: Vec<Bound<'_, PyAny>>,
        id: Option<u64>,
        volatile: bool,
    ) -> PyResult<Vec<u64>> {
        let sio = self.sio.as_mut().ok_or_else(no_socketio)?;
        let attachments = attachments_from_py(attachments)?;
        let data_json = &*json_arg(data_json)?;
        if volatile && id.is_none() {
            let reached = sio.broadcast_volatile(
                nsp,
                &rooms,
                &except_rooms,
                data_json,
                attachments,
                &mut self.driver.engine,
            );
            self.driver.request_flush();
            return Ok(reached);
        }
        let reached = sio.broadcast(
            nsp,
            &rooms,
            &except_rooms,
            data_json,
            attachments,
            id,
            &mut self.driver.engine,
        );
        self.driver.request_flush();
        Ok(reached)
    }

    #[pyo3(signature = (nsp, rooms=vec![], except_rooms=vec![]))]
    fn targets(
        &self,
        nsp: &str,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
    ) -> PyResult<Vec<u64>> {
        let sio = self.sio.as_ref().ok_or_else(no_socketio)?;
        Ok(sio.targets(nsp, &rooms, &except_rooms))
    }

    fn join(&mut self, socket: u64, rooms: Vec<String>) -> PyResult<()> {
        let sio = self.sio.as_mut().ok_or_else(no_socketio)?;
        for r in &rooms {
            sio.join(socket, r);
        }
        Ok(())
    }

    fn leave(&mut self, socket: u64, room: &str) -> PyResult<()> {
        self.sio
            .as_mut()
            .ok_or_else(no_socketio)?
            .leave(socket, room);
        Ok(())
    }

    fn rooms_of(&self, socket: u64) -> PyResult<Vec<String>> {
        let sio = self.sio.as_ref().ok_or_else(no_socketio)?;
        Ok(sio.rooms_of(socket).iter().map(|r| r.to_string()).collect())
    }

    fn socket_count(&self, nsp: &str) -> PyResult<usize> {
        Ok(self.sio.as_ref().ok_or_else(no_socketio)?.socket_count(nsp))
    }
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EngineCore>()?;
    m.add_class::<VirtualCore>()?;
    m.add_function(wrap_pyfunction!(crate::pyjson::encode_args, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

// ---- the socket-less mode: connections handed over by an ASGI server (driver/virtual.rs) ----------------------

use crate::driver::virtual_conn::{Output, VirtualConns};
use pyo3::exceptions::PyRuntimeError;
use pyo3::pybacked::PyBackedBytes;

/// Feeds an `EngineCore`'s engine (and its Socket.IO layer) with connections an ASGI server hands over instead
/// of sockets. The application keeps calling the core as before; those calls wake the core's descriptor
/// (`fileno`), and `turn` collects what they produced. Inputs and `turn` return the application's events and
/// the connections that have outputs waiting (`take`). Sendable for the reason `EngineCore` is.
#[pyclass(module = "anysio._native")]
pub struct VirtualCore {
    core: Py<EngineCore>,
    conns: VirtualConns,
    /// Earlier than any timer the engine can hold afterwards; see `turn`.
    created: Instant,
}

type Settled<'py> = (Bound<'py, PyList>, Vec<u64>);

fn remote_from_py(remote: Option<(String, u16)>) -> Option<SocketAddr> {
    let (host, port) = remote?;
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

fn output_to_py(py: Python<'_>, output: Output) -> PyResult<Bound<'_, PyAny>> {
    Ok(match output {
        Output::Response {
            status,
            headers,
            body,
        } => ("response", status, headers, PyBytes::new(py, &body))
            .into_pyobject(py)?
            .into_any(),
        Output::Accept { headers } => ("accept", headers).into_pyobject(py)?.into_any(),
        Output::Message(data) => ("message", data_to_py(py, &data))
            .into_pyobject(py)?
            .into_any(),
        Output::Close(code) => ("close", code).into_pyobject(py)?.into_any(),
    })
}

/// Run the layers until they are quiet: engine events through the Socket.IO layer, output into the virtual
/// connections (letting one go can close a session, which makes more events and output).
fn settle<'py>(
    py: Python<'py>,
    conns: &mut VirtualConns,
    core: &mut EngineCore,
    now: Instant,
) -> PyResult<Settled<'py>> {
    let out = PyList::empty(py);
    let engine = &mut core.driver.engine;
    engine.handle_timeout(now);
    loop {
        match &mut core.sio {
            None => {
                while let Some(ev) = engine.poll_event() {
                    out.append(engine_event_to_py(py, ev)?)?;
                }
            }
            Some(sio) => {
                sio.pump(engine, now);
                sio.handle_timeout(engine, now);
                sio.pump(engine, now);
            }
        }
        if !conns.collect(engine, now) && !engine.has_events() {
            break;
        }
    }
    if let Some(sio) = &mut core.sio {
        while let Some(ev) = sio.poll_event() {
            out.append(sio_event_to_py(py, ev)?)?;
        }
    }
    Ok((out, conns.take_ready()))
}

impl VirtualCore {
    fn with_core<'py, T>(
        &mut self,
        py: Python<'py>,
        f: impl FnOnce(&mut VirtualConns, &mut EngineCore, Instant) -> T,
    ) -> PyResult<T> {
        let bound = self.core.bind(py);
        let mut core = bound
            .try_borrow_mut()
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(f(&mut self.conns, &mut core, Instant::now()))
    }
}

#[pymethods]
impl VirtualCore {
    #[new]
    fn new(core: Py<EngineCore>) -> Self {
        VirtualCore {
            core,
            conns: VirtualConns::new(),
            created: Instant::now(),
        }
    }

    /// The engine's path prefix, with its trailing '/' ("/socket.io/").
    #[getter]
    fn path(&self, py: Python<'_>) -> PyResult<String> {
        let core = self.core.bind(py).try_borrow()?;
        Ok(core.driver.engine.config.path.clone())
    }

    #[getter]
    fn max_payload(&self, py: Python<'_>) -> PyResult<usize> {
        let core = self.core.bind(py).try_borrow()?;
        Ok(core.driver.engine.config.max_payload)
    }

    /// Virtual connections not yet let go.
    #[getter]
    fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Readable when the application's calls produced something for `turn` to collect.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        Ok(self.core.bind(py).try_borrow()?.driver.fd())
    }

    /// Make `fileno` readable, as the application's calls do: the driver has work of its own for its loop.
    fn wake(&self, py: Python<'_>) -> PyResult<()> {
        self.core.bind(py).try_borrow_mut()?.driver.request_flush();
        Ok(())
    }

    /// Seconds until the next timer (engine or Socket.IO), or None.
    fn next_timeout(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        let core = self.core.bind(py).try_borrow()?;
        let sio = core.sio.as_ref().and_then(SocketIo::next_timeout);
        let at = match (core.driver.engine.next_timeout(), sio) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(at.map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64()))
    }

    /// A new connection carrying one HTTP request (its whole body); returns its id, events and ready ids.
    #[pyo3(signature = (method, target, headers, body, remote=None))]
    fn request<'py>(
        &mut self,
        py: Python<'py>,
        method: &str,
        target: &str,
        headers: Vec<(PyBackedBytes, PyBackedBytes)>,
        body: &[u8],
        remote: Option<(String, u16)>,
    ) -> PyResult<(u64, Bound<'py, PyList>, Vec<u64>)> {
        let remote = remote_from_py(remote);
        self.with_core(py, |conns, core, now| {
            let engine = &mut core.driver.engine;
            let conn = conns.request(engine, method, target, &headers, body, remote, now);
            let (events, ready) = settle(py, conns, core, now)?;
            Ok((conn, events, ready))
        })?
    }

    /// A new connection carrying a WebSocket opening handshake; its first output is "accept" or "response".
    #[pyo3(signature = (target, headers, remote=None))]
    fn websocket<'py>(
        &mut self,
        py: Python<'py>,
        target: &str,
        headers: Vec<(PyBackedBytes, PyBackedBytes)>,
        remote: Option<(String, u16)>,
    ) -> PyResult<(u64, Bound<'py, PyList>, Vec<u64>)> {
        let remote = remote_from_py(remote);
        self.with_core(py, |conns, core, now| {
            let conn = conns.websocket(&mut core.driver.engine, target, &headers, remote, now);
            let (events, ready) = settle(py, conns, core, now)?;
            Ok((conn, events, ready))
        })?
    }

    /// A message from the peer of an accepted WebSocket (ignored once the connection is closed).
    fn message<'py>(
        &mut self,
        py: Python<'py>,
        conn: u64,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Settled<'py>> {
        let data = data_from_py(data)?;
        self.with_core(py, |conns, core, now| {
            conns.message(&mut core.driver.engine, conn, &data, now);
            settle(py, conns, core, now)
        })?
    }

    /// The peer went away or the request ended without an answer; the engine hears a dropped connection.
    fn disconnect<'py>(&mut self, py: Python<'py>, conn: u64) -> PyResult<Settled<'py>> {
        self.with_core(py, |conns, core, now| {
            conns.disconnect(&mut core.driver.engine, conn, now);
            settle(py, conns, core, now)
        })?
    }

    /// The outputs waiting for `conn`, oldest first: ("response", status, headers, body), ("accept", headers),
    /// ("message", str | bytes), ("close", code | None). After "response" or "close" nothing follows.
    fn take<'py>(&mut self, py: Python<'py>, conn: u64) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for o in self.conns.take(conn) {
            out.append(output_to_py(py, o)?)?;
        }
        Ok(out)
    }

    /// Due timers and whatever the application's calls produced since the last call.
    fn turn<'py>(&mut self, py: Python<'py>) -> PyResult<Settled<'py>> {
        let created = self.created;
        self.with_core(py, |conns, core, now| {
            let settled = settle(py, conns, core, now)?;
            // The application's calls wake the core's descriptor once (Driver::request_flush) and only the
            // driver's turn re-arms it. That turn has nothing else to do: there are no sockets, `settle` took
            // every connection's output, and no timer is due at `created`.
            match core.driver.turn(created) {
                // A signal during the zero-timeout poll: the wake-up stays armed for the next turn.
                Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                    Err(PyOSError::new_err(e.to_string()))
                }
                _ => Ok(settled),
            }
        })?
    }

    /// Close every session ("server shutting down"); the goodbyes are outputs of their connections.
    fn shutdown<'py>(&mut self, py: Python<'py>) -> PyResult<Settled<'py>> {
        self.with_core(py, |conns, core, now| {
            core.driver.engine.shutdown(now);
            settle(py, conns, core, now)
        })?
    }
}
