//! `EngineCore`: the socket driver and a core, as the Python class the servers drive.
use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use super::convert::*;
use crate::core::{AnyCore, Core, EngineOnly};
use crate::driver::{self, Driver};
use crate::engineio::{self, Cookie, ErrorCode};
use crate::ids::{ConnId, SessionKey, SocketKey};
use crate::socketio::SocketIo;

/// The server core: the sockets, the Engine.IO session table and timers, and (with `socketio=True`) the
/// Socket.IO namespaces, sockets and rooms.
// Not `unsendable`: a server sits in reference cycles (its sessions point back at it), and the cycle collector
// may free it on any thread; an unsendable core would then be leaked with an error instead of dropped.
#[pyclass(module = "anysio._native")]
pub struct EngineCore {
    pub(super) driver: Driver,
    pub(super) core: AnyCore,
}

impl EngineCore {
    /// The Socket.IO layer with its engine: the one place that says this core has none.
    fn sio(&mut self) -> PyResult<&mut Core<SocketIo>> {
        self.core.socketio().ok_or_else(no_socketio)
    }

    fn sio_ref(&self) -> PyResult<&Core<SocketIo>> {
        self.core.socketio_ref().ok_or_else(no_socketio)
    }

    fn engine(&mut self) -> &mut engineio::Engine {
        self.core.engine_mut()
    }
}

fn no_socketio() -> PyErr {
    PyValueError::new_err("this core was created without socketio=True")
}

#[pymethods]
impl EngineCore {
    #[new]
    #[pyo3(signature = (*, ping_interval=25.0, ping_timeout=20.0, upgrade_timeout=10.0, max_payload=1_000_000,
        transports=vec!["polling".to_owned(), "websocket".to_owned()], allow_upgrades=true, path="/engine.io",
        cors_origins=None, cors_credentials=false, cookie_name=None, cookie_path="/", cookie_http_only=true,
        cookie_same_site=Some("Lax".to_owned()), max_connections=None, defer_handshakes=false, sid_prefix="",
        max_buffered=16*1024*1024, socketio=false, connect_timeout=45.0, serve_other_paths=false,
        request_timeout=60.0, keep_alive_timeout=5.0, recovery=None))]
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
        request_timeout: f64,
        keep_alive_timeout: f64,
        recovery: Option<f64>,
    ) -> PyResult<Self> {
        let cookie = cookie_name.map(|name| Cookie {
            name,
            path: cookie_path.to_owned(),
            http_only: cookie_http_only,
            same_site: cookie_same_site,
        });
        let mut config = config_from_py(
            ping_interval,
            ping_timeout,
            upgrade_timeout,
            max_payload,
            transports,
            allow_upgrades,
            path,
            cors_origins,
            cors_credentials,
            cookie,
            max_connections,
            defer_handshakes,
            sid_prefix,
            max_buffered,
            serve_other_paths,
        )?;
        config.request_timeout = secs(request_timeout)?;
        config.keep_alive_timeout = secs(keep_alive_timeout)?;
        let engine = engineio::Engine::new(config);
        let mut sio = SocketIo::new(secs(connect_timeout)?);
        if let Some(max) = recovery {
            sio.enable_recovery(secs(max)?);
        }
        let core = match socketio {
            true => AnyCore::SocketIo(Core::new(engine, sio)),
            false => AnyCore::EngineIo(Core::new(engine, EngineOnly::default())),
        };
        let driver = Driver::new().map_err(os_error)?;
        Ok(EngineCore { driver, core })
    }

    /// Listen on a bound, listening socket whose descriptor Python gives up (`socket.detach()`).
    fn listen_fd(&mut self, fd: i32) -> PyResult<(String, u16)> {
        let fd = driver::take_socket(fd).map_err(os_error)?;
        let bound = self.driver.listen_fd(fd).map_err(os_error)?;
        Ok((bound.ip().to_string(), bound.port()))
    }

    /// Serve as worker `index` of several sharing one port (sids carry the index; see driver/workers.rs).
    fn set_worker(&mut self, index: u32) {
        self.driver.set_worker(self.core.engine_mut(), index);
    }

    /// Whether requests outside the Engine.IO path go to the application as "request" events (static files added
    /// after the server was made, such as the Admin UI's) instead of being answered 404 by the core.
    fn set_serve_other_paths(&mut self, on: bool) {
        self.core.engine_mut().config.serve_other_paths = on;
    }

    /// Take over a client connection handed over by another worker (a descriptor from `socket.recv_fds`).
    fn adopt(&mut self, fd: i32) -> PyResult<()> {
        let fd = driver::take_socket(fd).map_err(os_error)?;
        self.driver
            .adopt(self.core.engine_mut(), fd)
            .map_err(os_error)?;
        self.driver.request_flush();
        Ok(())
    }

    fn fileno(&self) -> i32 {
        self.driver.fd()
    }

    /// Seconds until the next timer, or None.
    fn next_timeout(&self) -> Option<f64> {
        seconds_until(self.driver.next_deadline(self.core.next_deadline()))
    }

    /// Do all ready I/O and due timers; return the events for the application.
    fn turn<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let now = Instant::now();
        match &mut self.core {
            AnyCore::EngineIo(c) => self.driver.turn(c, now),
            AnyCore::SocketIo(c) => self.driver.turn(c, now),
        }
        .map_err(os_error)?;
        let out = PyList::empty(py);
        // Python sends each descriptor to its owner and closes it.
        for (fd, owner) in self.driver.take_handoffs() {
            out.append(("handoff", fd, owner))?;
        }
        drain_any(py, &mut self.core, &out)?;
        Ok(out)
    }

    fn send(&mut self, key: SessionKey, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let data = data_from_py(data)?;
        let sent = self.engine().send(key, data);
        self.driver.request_flush();
        Ok(sent)
    }

    fn broadcast(&mut self, keys: Vec<SessionKey>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data_from_py(data)?;
        self.engine().broadcast(&keys, data);
        self.driver.request_flush();
        Ok(())
    }

    fn close(&mut self, key: SessionKey) {
        self.engine().close(key, Instant::now());
        self.driver.request_flush();
    }

    #[pyo3(signature = (conn, sid=None))]
    fn accept_handshake(&mut self, conn: ConnId, sid: Option<String>) {
        self.engine().accept_handshake(conn, sid, Instant::now());
        self.driver.request_flush();
    }

    #[pyo3(signature = (conn, code, message=None))]
    fn refuse_handshake(&mut self, conn: ConnId, code: u8, message: Option<&str>) -> PyResult<()> {
        let code = ErrorCode::from_code(code)
            .ok_or_else(|| PyValueError::new_err(format!("unknown error code {code}")))?;
        self.engine().refuse_handshake(conn, code, message);
        self.driver.request_flush();
        Ok(())
    }

    /// Node's `initial_headers` / `headers`: `hook(initial, request, headers)` is called, while the core runs,
    /// for every response that carries a session and returns the headers to send in place of `headers` (the
    /// session cookie, if any). None removes it. An error it raises is Python's "unraisable" one; the response
    /// then goes out with the headers it had.
    #[pyo3(signature = (hook))]
    fn set_headers_hook(&mut self, hook: Option<PyObject>) {
        let hook = hook.map(|f| -> engineio::HeadersHook {
            Box::new(move |initial, request, headers| {
                Python::with_gil(|py| {
                    if let Err(e) = call_headers_hook(py, &f, initial, request, headers) {
                        e.write_unraisable(py, Some(f.bind(py)));
                    }
                });
            })
        });
        self.engine().set_headers_hook(hook);
    }

    /// Answer a "request" event (a path outside Engine.IO's).
    #[pyo3(signature = (conn, status, headers, body))]
    fn respond(
        &mut self,
        conn: ConnId,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) {
        self.engine().respond_app(conn, status, &headers, body);
        self.driver.request_flush();
    }

    fn sid_of(&self, key: SessionKey) -> Option<String> {
        self.core.engine().sid_of(key).map(|s| s.to_string())
    }

    fn transport_of(&self, key: SessionKey) -> Option<&'static str> {
        self.core.engine().transport_of(key).map(|t| t.name())
    }

    #[getter]
    fn session_count(&self) -> usize {
        self.core.engine().session_count()
    }

    #[getter]
    fn connection_count(&self) -> usize {
        self.driver.connection_count()
    }

    /// Close every session ("server shutting down") and every socket.
    fn shutdown(&mut self) {
        let now = Instant::now();
        match &mut self.core {
            AnyCore::EngineIo(c) => self.driver.close_all(c, now),
            AnyCore::SocketIo(c) => self.driver.close_all(c, now),
        }
    }

    // ---- the Socket.IO layer's calls; sockets are named by the keys of the "connect" event ----

    fn add_namespace(&mut self, nsp: &str) -> PyResult<()> {
        self.sio()?.layer.add_namespace(nsp);
        Ok(())
    }

    /// Forget a namespace that has no connected socket (a child namespace left empty); false if it has one.
    fn remove_namespace(&mut self, nsp: &str) -> PyResult<bool> {
        Ok(self.sio()?.layer.remove_namespace(nsp))
    }

    /// With parent namespaces, a CONNECT to a namespace the core does not know goes to the application as a
    /// "connect" event (it creates the child or refuses) instead of being answered "Invalid namespace".
    fn set_dynamic_namespaces(&mut self, on: bool) -> PyResult<()> {
        self.sio()?.layer.dynamic_namespaces = on;
        Ok(())
    }

    fn accept(&mut self, socket: SocketKey) -> PyResult<bool> {
        let c = self.sio()?;
        let ok = c.layer.accept(socket, &mut c.engine);
        self.driver.request_flush();
        Ok(ok)
    }

    fn refuse(&mut self, socket: SocketKey, data_json: &Bound<'_, PyString>) -> PyResult<()> {
        let c = self.sio()?;
        c.layer
            .refuse(socket, &json_text(data_json)?, &mut c.engine);
        self.driver.request_flush();
        Ok(())
    }

    #[pyo3(signature = (socket, close=false))]
    fn disconnect(&mut self, socket: SocketKey, close: bool) -> PyResult<()> {
        let c = self.sio()?;
        let now = Instant::now();
        c.layer.disconnect(socket, close, &mut c.engine, now);
        c.layer.pump(&mut c.engine, now);
        self.driver.request_flush();
        Ok(())
    }

    /// One socket: an EVENT (with an ack id when `id` is given), or with `ack_reply` the ACK for `id`.
    #[pyo3(signature = (socket, data_json, attachments=None, id=None, ack_reply=false))]
    fn emit_to(
        &mut self,
        socket: SocketKey,
        data_json: &Bound<'_, PyAny>,
        attachments: Option<&Bound<'_, PyAny>>,
        id: Option<u64>,
        ack_reply: bool,
    ) -> PyResult<bool> {
        let attachments = attachments_from_py(attachments)?;
        let data_json = json_arg(data_json)?;
        let c = self.sio()?;
        let ok = (c.layer).emit_to(
            socket,
            &data_json,
            attachments,
            id,
            ack_reply,
            &mut c.engine,
        );
        self.driver.request_flush();
        Ok(ok)
    }

    /// A broadcast, encoded once; returns the keys of the sockets it reached.
    /// With `volatile`, sockets not ready to send right now miss the event (no ack id then).
    #[pyo3(signature = (nsp, data_json, rooms=vec![], except_rooms=vec![], attachments=None, id=None, volatile=false))]
    #[allow(clippy::too_many_arguments)]
    fn broadcast_event(
        &mut self,
        nsp: &str,
        data_json: &Bound<'_, PyAny>,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        attachments: Option<&Bound<'_, PyAny>>,
        id: Option<u64>,
        volatile: bool,
    ) -> PyResult<Vec<SocketKey>> {
        let attachments = attachments_from_py(attachments)?;
        let data_json = &*json_arg(data_json)?;
        let c = self.sio()?;
        let (sio, engine) = (&mut c.layer, &mut c.engine);
        let reached = if volatile && id.is_none() {
            sio.broadcast_volatile(nsp, &rooms, &except_rooms, data_json, attachments, engine)
        } else {
            sio.broadcast(
                nsp,
                &rooms,
                &except_rooms,
                data_json,
                attachments,
                id,
                engine,
            )
        };
        self.driver.request_flush();
        Ok(reached)
    }

    #[pyo3(signature = (nsp, rooms=vec![], except_rooms=vec![]))]
    fn targets(
        &self,
        nsp: &str,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
    ) -> PyResult<Vec<SocketKey>> {
        Ok(self.sio_ref()?.layer.targets(nsp, &rooms, &except_rooms))
    }

    fn join(&mut self, socket: SocketKey, rooms: Vec<String>) -> PyResult<()> {
        let sio = &mut self.sio()?.layer;
        for r in &rooms {
            sio.join(socket, r);
        }
        Ok(())
    }

    fn leave(&mut self, socket: SocketKey, room: &str) -> PyResult<()> {
        self.sio()?.layer.leave(socket, room);
        Ok(())
    }

    fn rooms_of(&self, socket: SocketKey) -> PyResult<Vec<String>> {
        let rooms = self.sio_ref()?.layer.rooms_of(socket);
        Ok(rooms.iter().map(|r| r.to_string()).collect())
    }

    fn socket_count(&self, nsp: &str) -> PyResult<usize> {
        Ok(self.sio_ref()?.layer.socket_count(nsp))
    }

    // ---- connection state recovery (recovery=seconds) ----

    /// The private session id of a socket (its CONNECT reply's `pid`), when recovery is on.
    fn pid_of(&self, socket: SocketKey) -> PyResult<Option<String>> {
        Ok(self.sio_ref()?.layer.pid_of(socket).map(|p| p.to_string()))
    }

    /// Recover the disconnected socket `pid` kept here into the connecting `socket`; its id, or None.
    fn restore(&mut self, socket: SocketKey, pid: &str, offset: &str) -> PyResult<Option<String>> {
        let c = self.sio()?;
        let sid = c
            .layer
            .restore(socket, pid, offset, &mut c.engine, Instant::now());
        self.driver.request_flush();
        Ok(sid.map(|s| s.to_string()))
    }

    /// Take the state of the disconnected socket `pid` of `nsp` away, for another worker to recover it.
    fn take_session(
        &mut self,
        py: Python<'_>,
        nsp: &str,
        pid: &str,
        offset: &str,
    ) -> PyResult<Option<SessionTuple>> {
        let c = self.sio()?;
        let taken = c.layer.take_session(nsp, pid, offset, Instant::now());
        Ok(taken.map(|s| session_to_py(py, s)))
    }

    /// Recover a state another worker took (`take_session`) into the connecting `socket`; its id, or None.
    fn adopt_session(
        &mut self,
        py: Python<'_>,
        socket: SocketKey,
        session: SessionTuple,
    ) -> PyResult<Option<String>> {
        let session = session_from_py(py, session)?;
        let c = self.sio()?;
        let sid = c.layer.adopt_session(socket, session, &mut c.engine);
        self.driver.request_flush();
        Ok(sid.map(|s| s.to_string()))
    }

    /// Disconnected sockets kept for recovery.
    #[getter]
    fn disconnected_count(&self) -> PyResult<usize> {
        Ok(self.sio_ref()?.layer.disconnected_count())
    }
}
