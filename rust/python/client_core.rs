//! `ClientCore`: the client's sans-IO state (`crate::client::Client`) as the Python class anysio.Client drives.
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use pyo3::IntoPyObjectExt;

use crate::client::{Client, Event, Parser, ProtocolError, Transport};

/// One Engine.IO session of a client, with the Socket.IO packets above it. Events cross as tuples:
/// `("open", sid, upgrades, ping_interval_ms, ping_timeout_ms, max_payload)`, `("close",)`, `("ping",)`,
/// `("probed",)`, `("connect", nsp, data_json | None)`, `("connect_error", nsp, data_json | None)`,
/// `("disconnect", nsp)`, `("event", nsp, name, args_json, argc, id | None, attachments | None)`,
/// `("ack", nsp, id, args_json, attachments | None)`. A server's answer that breaks the protocol is a ValueError.
#[pyclass(module = "anysio._native")]
pub struct ClientCore {
    client: Client,
}

fn protocol(e: ProtocolError) -> PyErr {
    PyValueError::new_err(e.0)
}

fn attachments(py: Python<'_>, items: Vec<Vec<u8>>) -> PyResult<PyObject> {
    if items.is_empty() {
        return Ok(py.None());
    }
    let list: Vec<Bound<'_, PyBytes>> = items.iter().map(|b| PyBytes::new(py, b)).collect();
    Ok(PyList::new(py, list)?.into_any().unbind())
}

fn event_tuple(py: Python<'_>, event: Event) -> PyResult<PyObject> {
    let tuple = match event {
        Event::Open(h) => (
            "open",
            h.sid,
            h.upgrades,
            h.ping_interval,
            h.ping_timeout,
            h.max_payload,
        )
            .into_py_any(py)?,
        Event::Close => ("close",).into_py_any(py)?,
        Event::Ping => ("ping",).into_py_any(py)?,
        Event::Probed => ("probed",).into_py_any(py)?,
        Event::Connect { nsp, data } => ("connect", nsp, data).into_py_any(py)?,
        Event::ConnectError { nsp, data } => ("connect_error", nsp, data).into_py_any(py)?,
        Event::Disconnect { nsp } => ("disconnect", nsp).into_py_any(py)?,
        Event::Event {
            nsp,
            name,
            args,
            argc,
            id,
            attachments: a,
        } => {
            let a = attachments(py, a)?;
            ("event", nsp, name, args, argc, id, a).into_py_any(py)?
        }
        Event::Ack {
            nsp,
            id,
            args,
            attachments: a,
        } => {
            let a = attachments(py, a)?;
            ("ack", nsp, id, args, a).into_py_any(py)?
        }
    };
    Ok(tuple)
}

fn event_list(py: Python<'_>, events: Vec<Event>) -> PyResult<Bound<'_, PyList>> {
    let items = events
        .into_iter()
        .map(|e| event_tuple(py, e))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

fn bytes_list(items: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    if items.is_none() {
        return Ok(Vec::new());
    }
    items.try_iter()?.map(|b| b?.extract::<Vec<u8>>()).collect()
}

#[pymethods]
impl ClientCore {
    #[new]
    #[pyo3(signature = (transport, parser="default"))]
    fn new(transport: &str, parser: &str) -> PyResult<Self> {
        let parser = match parser {
            "default" => Parser::Default,
            "msgpack" => Parser::Msgpack,
            other => return Err(PyValueError::new_err(format!("unknown parser {other:?}"))),
        };
        let transport = match transport {
            "polling" => Transport::Polling,
            "websocket" => Transport::WebSocket,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown transport {other:?}"
                )))
            }
        };
        Ok(ClientCore {
            client: Client::new(transport, parser),
        })
    }

    #[getter]
    fn transport(&self) -> &'static str {
        match self.client.transport() {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }

    fn feed_polling<'py>(&mut self, py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let mut events = Vec::new();
        let result = self.client.feed_polling(body, &mut events);
        result.map_err(protocol)?;
        event_list(py, events)
    }

    fn feed_websocket<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<Bound<'py, PyList>> {
        let mut events = Vec::new();
        let result = self.client.feed_websocket(data, &mut events);
        result.map_err(protocol)?;
        event_list(py, events)
    }

    fn probe_frame<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.client.probe_frame())
    }

    fn feed_probe<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let mut events = Vec::new();
        let result = self.client.feed_probe(data, &mut events);
        result.map_err(protocol)?;
        event_list(py, events)
    }

    fn upgrade(&mut self) -> PyResult<()> {
        self.client.upgrade().map_err(protocol)
    }

    fn take_payload<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.client.take_payload().map(|b| PyBytes::new(py, &b))
    }

    fn take_frames<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.client.take_frames())
    }

    fn close(&mut self) {
        self.client.close();
    }

    #[pyo3(signature = (nsp, auth_json=None))]
    fn connect(&mut self, nsp: &str, auth_json: Option<&str>) -> PyResult<()> {
        self.client.connect(nsp, auth_json).map_err(protocol)
    }

    fn disconnect(&mut self, nsp: &str) -> PyResult<()> {
        self.client.disconnect(nsp).map_err(protocol)
    }

    /// An EVENT: `data_json` is the array with the event's name first.
    #[pyo3(signature = (nsp, data_json, id, attachments))]
    fn event(
        &mut self,
        nsp: &str,
        data_json: &str,
        id: Option<u64>,
        attachments: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.client
            .event(nsp, data_json, id, bytes_list(attachments)?)
            .map_err(protocol)
    }

    fn ack(
        &mut self,
        nsp: &str,
        id: u64,
        data_json: &str,
        attachments: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.client
            .ack(nsp, id, data_json, bytes_list(attachments)?)
            .map_err(protocol)
    }
}
