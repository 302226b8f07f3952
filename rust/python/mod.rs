//! The one module that knows Python: the `anysio._native` module (conversions in `convert`, the two classes
//! as thin calls into `core::Core` and the drivers).
//!
//! Errors cross here once: OS errors become `OSError`, bad arguments `ValueError`. Events cross as tuples
//! (cheaper to build than objects, and the Python side unpacks them at once):
//! `("open", key, sid, transport, request)`, `("message", key, str | bytes)`, `("upgrade", key)`,
//! `("close", key, reason)`, `("handshake", conn, request)`, `("error", message, remote)`.
mod client_core;
mod convert;
mod engine_core;
mod handler_times;
mod virtual_core;

use pyo3::prelude::*;

pub use client_core::ClientCore;
pub use engine_core::EngineCore;
pub use handler_times::HandlerTimes;
pub use virtual_core::VirtualCore;

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EngineCore>()?;
    m.add_class::<VirtualCore>()?;
    m.add_class::<ClientCore>()?;
    m.add_class::<HandlerTimes>()?;
    m.add_function(wrap_pyfunction!(crate::pyjson::encode_args, m)?)?;
    crate::adapter::python_redis::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
