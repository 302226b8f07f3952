//! `HandlerTimes`: the event handlers' time for `/metrics` (`crate::metrics::HandlerTimes`), on a clock of its
//! own, so that the dispatcher's per-event work is one call (`lap`).
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::metrics;

#[pyclass(module = "anysio._native")]
pub struct HandlerTimes {
    times: metrics::HandlerTimes,
    origin: Instant,
}

impl HandlerTimes {
    fn nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[pymethods]
impl HandlerTimes {
    /// The first bucket holds what is under 2**LOW ns; bucket i under 2**(LOW + i); one more over them all.
    #[classattr]
    const LOW: u32 = metrics::HANDLER_LOW;
    #[classattr]
    const BUCKETS: usize = metrics::HANDLER_BUCKETS;

    #[new]
    fn new() -> Self {
        HandlerTimes {
            times: metrics::HandlerTimes::default(),
            origin: Instant::now(),
        }
    }

    /// Nanoseconds on this object's monotonic clock.
    fn now(&self) -> u64 {
        self.nanos()
    }

    /// The event that started at `started` (a `now()`) ends now: counted. Returns now, when the next starts.
    fn lap(&mut self, started: u64) -> u64 {
        let now = self.nanos();
        self.times.observe(now.saturating_sub(started));
        now
    }

    fn observe(&mut self, ns: u64) {
        self.times.observe(ns);
    }

    #[getter]
    fn buckets(&self) -> Vec<u64> {
        self.times.buckets.to_vec()
    }

    /// `{"buckets": [...], "sum": seconds}`, as the scrape sums it over the workers.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("buckets", self.buckets())?;
        d.set_item("sum", self.times.total_ns as f64 / 1e9)?;
        Ok(d)
    }
}
