//! `VirtualCore`: the socket-less driver (driver/virtual.rs) over an `EngineCore`'s core, for the ASGI app.
use std::time::Instant;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyList;

use super::convert::*;
use super::engine_core::EngineCore;
use crate::core::AnyCore;
use crate::driver::virtual_conn::VirtualConns;
use crate::ids::ConnId;

/// Feeds an `EngineCore`'s engine (and its Socket.IO layer) with connections an ASGI server hands over instead
/// of sockets. The application keeps calling the core as before; those calls wake the core's descriptor
/// (`fileno`), and `turn` collects what they produced. Inputs and `turn` return the application's events and
/// the connections that have outputs waiting (`take`). Sendable for the reason `EngineCore` is.
#[pyclass(module = "anysio._native")]
pub struct VirtualCore {
    core: Py<EngineCore>,
    conns: VirtualConns,
}

type Settled<'py> = (Bound<'py, PyList>, Vec<ConnId>);

/// Run the layers until they are quiet; the application's events and the connections with outputs waiting.
fn settle<'py>(
    py: Python<'py>,
    conns: &mut VirtualConns,
    core: &mut AnyCore,
    now: Instant,
) -> PyResult<Settled<'py>> {
    match core {
        AnyCore::EngineIo(c) => conns.settle(c, now),
        AnyCore::SocketIo(c) => conns.settle(c, now),
    }
    let out = PyList::empty(py);
    drain_any(py, core, &out)?;
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
        }
    }

    /// The engine's path prefix, with its trailing '/' ("/socket.io/").
    #[getter]
    fn path(&self, py: Python<'_>) -> PyResult<String> {
        let core = self.core.bind(py).try_borrow()?;
        Ok(core.core.engine().config.path.clone())
    }

    #[getter]
    fn max_payload(&self, py: Python<'_>) -> PyResult<usize> {
        let core = self.core.bind(py).try_borrow()?;
        Ok(core.core.engine().config.max_payload)
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
        Ok(seconds_until(core.core.next_deadline()))
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
    ) -> PyResult<(ConnId, Bound<'py, PyList>, Vec<ConnId>)> {
        let remote = remote_from_py(remote);
        self.with_core(py, |conns, core, now| {
            let engine = core.core.engine_mut();
            let conn = conns.request(engine, method, target, &headers, body, remote, now);
            let (events, ready) = settle(py, conns, &mut core.core, now)?;
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
    ) -> PyResult<(ConnId, Bound<'py, PyList>, Vec<ConnId>)> {
        let remote = remote_from_py(remote);
        self.with_core(py, |conns, core, now| {
            let conn = conns.websocket(core.core.engine_mut(), target, &headers, remote, now);
            let (events, ready) = settle(py, conns, &mut core.core, now)?;
            Ok((conn, events, ready))
        })?
    }

    /// A message from the peer of an accepted WebSocket (ignored once the connection is closed). Only fed in:
    /// the next `turn` settles it with everything else that arrived since (one pass through the layers per
    /// batch, not per message), and this wakes `fileno` for it.
    fn message(&mut self, py: Python<'_>, conn: ConnId, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data_from_py(data)?;
        self.with_core(py, |conns, core, now| {
            if conns.message(core.core.engine_mut(), conn, data, now) {
                core.driver.request_flush();
            }
        })
    }

    /// The peer went away or the request ended without an answer; the engine hears a dropped connection.
    fn disconnect<'py>(&mut self, py: Python<'py>, conn: ConnId) -> PyResult<Settled<'py>> {
        self.with_core(py, |conns, core, now| {
            conns.disconnect(core.core.engine_mut(), conn, now);
            settle(py, conns, &mut core.core, now)
        })?
    }

    /// The outputs waiting for `conn`, oldest first: ("response", status, headers, body), ("accept", headers),
    /// a WebSocket message as the ASGI event that sends it ({"type": "websocket.send", "text" | "bytes": ...}),
    /// ("close", code | None). After "response" or "close" nothing follows.
    fn take<'py>(&mut self, py: Python<'py>, conn: ConnId) -> PyResult<Bound<'py, PyList>> {
        let taken = self.with_core(py, |conns, core, _| {
            let taken = conns.take(core.core.engine_mut(), conn);
            if !core.drain_watch.is_empty() {
                // The writer took what waited: the next turn tells the emitters waiting for a drain.
                core.driver.request_flush();
            }
            taken
        })?;
        let out = PyList::empty(py);
        for o in taken {
            out.append(output_to_py(py, o)?)?;
        }
        Ok(out)
    }

    /// Due timers and whatever the application's calls produced since the last call.
    fn turn<'py>(&mut self, py: Python<'py>) -> PyResult<Settled<'py>> {
        self.with_core(py, |conns, core, now| {
            let settled = settle(py, conns, &mut core.core, now)?;
            core.report_drained(&settled.0)?;
            // The application's calls wake the core's descriptor once (Driver::request_flush), and only the
            // driver re-arms it; there are no sockets here, and `settle` took every connection's output.
            match core.driver.rearm() {
                // A signal during the zero-timeout poll: the wake-up stays armed for the next turn.
                Err(e) if e.kind() != std::io::ErrorKind::Interrupted => Err(os_error(e)),
                _ => Ok(settled),
            }
        })?
    }

    /// Close every session ("server shutting down"); the goodbyes are outputs of their connections.
    fn shutdown<'py>(&mut self, py: Python<'py>) -> PyResult<Settled<'py>> {
        self.with_core(py, |conns, core, now| {
            core.core.engine_mut().shutdown(now);
            settle(py, conns, &mut core.core, now)
        })?
    }
}
