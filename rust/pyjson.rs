//! Event arguments from Python values to Socket.IO's JSON-with-attachments, in one pass (part of the Python
//! binding, behind the `python` feature).
//!
//! Python's own route (convert dataclasses and the like, look for binary values, then `json.dumps`) walks
//! every value three times in the interpreter; this walks it once. The JSON types are written here (exact
//! `dict`, `list`, `tuple`, `str`, `int`, `float`, `bool`, `None`), binary values (`bytes`, `bytearray`,
//! `memoryview`) become `{"_placeholder":true,"num":N}` with the bytes pulled out as attachments, and anything
//! else (dataclasses, models, enums, sets, subclasses) goes to the caller's `fallback`, whose JSON-like result
//! is written in its place. Infinities and NaN are written as JSON.stringify writes them: `null` (as a key,
//! `"Infinity"`, `"-Infinity"`, `"NaN"`); the rest of what `json.dumps` refuses is refused the same way.
use std::io::Write as _;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};

/// Python's default recursion limit: whatever Python's JSON reader could read (an argument echoed back) can be
/// written; a self-containing value stops here instead of overflowing the stack.
const MAX_DEPTH: usize = 1000;

struct Encoder<'py, 'f> {
    /// UTF-8: only `&str` and ASCII are written into it.
    out: Vec<u8>,
    attachments: Vec<Bound<'py, PyBytes>>,
    fallback: &'f Bound<'py, PyAny>,
}

impl<'py> Encoder<'py, '_> {
    fn value(&mut self, obj: &Bound<'py, PyAny>, depth: usize) -> PyResult<()> {
        if depth > MAX_DEPTH {
            return Err(PyValueError::new_err(
                "event arguments nested too deep (or containing themselves)",
            ));
        }
        let py = obj.py();
        if obj.is_none() {
            self.out.extend_from_slice(b"null");
        } else if let Ok(s) = obj.downcast_exact::<PyString>() {
            self.string(s)?;
        } else if obj.is_exact_instance_of::<PyBool>() {
            self.out
                .extend_from_slice(if obj.is_truthy()? { b"true" } else { b"false" });
        } else if obj.is_exact_instance_of::<PyInt>() {
            match obj.extract::<i64>() {
                Ok(n) => {
                    let _ = write!(self.out, "{n}");
                }
                // Beyond 64 bits: Python writes its digits (and refuses past its own digit limit).
                Err(_) => self.out.extend_from_slice(obj.str()?.to_str()?.as_bytes()),
            }
        } else if let Ok(f) = obj.downcast_exact::<PyFloat>() {
            self.float(f.value())?;
        } else if let Ok(d) = obj.downcast_exact::<PyDict>() {
            self.dict(d, depth)?;
        } else if let Ok(l) = obj.downcast_exact::<PyList>() {
            self.array(l.iter().map(Ok), depth)?;
        } else if let Ok(t) = obj.downcast_exact::<PyTuple>() {
            self.array(t.iter().map(Ok), depth)?;
        } else if let Some(bytes) = binary(py, obj)? {
            let _ = write!(
                self.out,
                r#"{{"_placeholder":true,"num":{}}}"#,
                self.attachments.len()
            );
            self.attachments.push(bytes);
        } else {
            let converted = self.fallback.call1((obj,))?;
            if converted.is(obj) {
                return self.subclass(obj, depth);
            }
            self.value(&converted, depth + 1)?;
        }
        Ok(())
    }

    /// What the fallback left as it was: a subclass of a JSON type is written as that type, as `json.dumps`
    /// does; anything else cannot be sent.
    fn subclass(&mut self, obj: &Bound<'py, PyAny>, depth: usize) -> PyResult<()> {
        if let Ok(s) = obj.downcast::<PyString>() {
            return self.string(s);
        }
        if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
            let digits = obj
                .py()
                .get_type::<PyInt>()
                .call_method1("__repr__", (obj,))?;
            self.out
                .extend_from_slice(digits.downcast::<PyString>()?.to_str()?.as_bytes());
            return Ok(());
        }
        if let Ok(f) = obj.downcast::<PyFloat>() {
            return self.float(f.value());
        }
        if let Ok(d) = obj.downcast::<PyDict>() {
            return self.dict(d, depth);
        }
        if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
            return self.array(obj.try_iter()?, depth);
        }
        Err(PyTypeError::new_err(format!(
            "Object of type {} is not JSON serializable",
            obj.get_type().name()?
        )))
    }

    fn array(
        &mut self,
        items: impl Iterator<Item = PyResult<Bound<'py, PyAny>>>,
        depth: usize,
    ) -> PyResult<()> {
        self.out.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.value(&item?, depth + 1)?;
        }
        self.out.push(b']');
        Ok(())
    }

    fn string(&mut self, s: &Bound<'py, PyString>) -> PyResult<()> {
        match s.to_str() {
            Ok(text) => {
                serde_json::to_writer(&mut self.out, text)
                    .map_err(|e| PyValueError::new_err(e.to_string()))?;
            }
            // A lone surrogate (from a JSON escape, which JSON.parse accepts): written as that escape again,
            // as JSON.stringify does; Python's json with ensure_ascii knows how.
            Err(_) => {
                let json = s.py().import("json")?.call_method1("dumps", (s,))?;
                self.out
                    .extend_from_slice(json.downcast::<PyString>()?.to_str()?.as_bytes());
            }
        }
        Ok(())
    }

    fn float(&mut self, f: f64) -> PyResult<()> {
        if !f.is_finite() {
            // JSON has no infinities: JSON.stringify writes null, and a client of Node reads that.
            self.out.extend_from_slice(b"null");
            return Ok(());
        }
        serde_json::to_writer(&mut self.out, &f).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn dict(&mut self, d: &Bound<'py, PyDict>, depth: usize) -> PyResult<()> {
        self.out.push(b'{');
        for (i, (key, item)) in d.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.key(&key, false)?;
            self.out.push(b':');
            self.value(&item, depth + 1)?;
        }
        self.out.push(b'}');
        Ok(())
    }

    /// Keys as `json.dumps` writes them: str as is, and int, float, bool, None as their JSON text in quotes;
    /// other keys (an enum, say) as the fallback converts them.
    fn key(&mut self, key: &Bound<'py, PyAny>, converted: bool) -> PyResult<()> {
        if let Ok(s) = key.downcast_exact::<PyString>() {
            return self.string(s);
        }
        let text = if key.is_none() {
            "null".to_owned()
        } else if key.is_exact_instance_of::<PyBool>() {
            (if key.is_truthy()? { "true" } else { "false" }).to_owned()
        } else if key.is_exact_instance_of::<PyInt>() {
            key.str()?.to_str()?.to_owned()
        } else if let Ok(f) = key.downcast_exact::<PyFloat>() {
            match f.value() {
                // A JavaScript object's keys are strings: String(Infinity) and String(NaN).
                v if v.is_nan() => "NaN".to_owned(),
                v if v.is_infinite() => (if v > 0.0 { "Infinity" } else { "-Infinity" }).to_owned(),
                _ => key.repr()?.to_str()?.to_owned(),
            }
        } else if !converted {
            let simpler = self.fallback.call1((key,))?;
            if !simpler.is(key) {
                return self.key(&simpler, true);
            }
            return Err(key_error(key));
        } else {
            return Err(key_error(key));
        };
        serde_json::to_writer(&mut self.out, &text)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }
}

fn key_error(key: &Bound<'_, PyAny>) -> PyErr {
    let name = key
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    PyTypeError::new_err(format!(
        "keys must be str, int, float, bool or None, not {name}"
    ))
}

/// The bytes of a binary value, copied (an attachment must not change after the emit).
fn binary<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(Some(if obj.is_exact_instance_of::<PyBytes>() {
            b.clone()
        } else {
            PyBytes::new(py, b.as_bytes())
        }));
    }
    if let Ok(b) = obj.downcast::<PyByteArray>() {
        return Ok(Some(PyBytes::new(py, &b.to_vec())));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        return Ok(Some(
            py.get_type::<PyBytes>()
                .call1((obj,))?
                .downcast_into::<PyBytes>()?,
        ));
    }
    Ok(None)
}

/// `encode_args(args, fallback)`: the JSON text of `args` (a list or tuple) and the attachments pulled out of
/// it. `fallback(value)` converts what JSON has no type for (returning it unchanged means it cannot be sent).
#[pyfunction]
pub fn encode_args<'py>(
    args: &Bound<'py, PyAny>,
    fallback: &Bound<'py, PyAny>,
) -> PyResult<(String, Vec<Bound<'py, PyBytes>>)> {
    let mut encoder = Encoder {
        out: Vec::with_capacity(64),
        attachments: Vec::new(),
        fallback,
    };
    encoder.value(args, 0)?;
    let text = String::from_utf8(encoder.out).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((text, encoder.attachments))
}
