//! PyO3 bindings: every `#[pyclass]`, conversion and error mapping lives here.
//!
//! Inputs are borrowed as numpy views (Arrow buffers arrive without a copy) and the work
//! runs with the GIL released, except serving's per-request calls (`ctr_logits`,
//! `FeatureHasher.hash_raw`, `merge_rows`, the co-visitation reads, a request's linear-model
//! scores): a request's rows take tens of microseconds, less than handing the GIL to another
//! thread and waiting for it back.
//! Errors become `rtrec.errors` exceptions.

use std::sync::{Mutex, TryLockError};

use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::covisit::CoVisitation as CoreCoVisitation;
use crate::error::Error;
use crate::events::{parse_simple, Limits as EventLimits, NumColumn, StrColumn};
use crate::hash::{
    merge_rows as merge_csr, murmur3_32 as murmur, Column, FeatureHasher as CoreHasher, ListArray, Offsets, RawPart,
    StrArray,
};
use crate::itemsets::ItemSets as CoreItemSets;
use crate::linear::OnlineLinear as CoreLinear;
use crate::pending::{Resolved, Rows as PlanRows, Slots, Waiting};
use crate::ring::{PushBatch, Ring, Rows, Strategy};
use crate::score::{ctr_logits as score_rows, CtrParams, Linear, Matrix};

fn to_py_err(py: Python<'_>, err: Error) -> PyErr {
    let (class, msg) = match &err {
        Error::InvalidInput { .. } => ("InvalidInputError", err.to_string()),
        Error::Corrupt(_) => ("CorruptDataError", err.to_string()),
    };
    match py.import("rtrec.errors").and_then(|m| m.getattr(class)) {
        Ok(cls) => PyErr::from_value(match cls.call1((msg.clone(),)) {
            Ok(v) => v,
            Err(e) => return e,
        }),
        Err(_) => PyRuntimeError::new_err(msg),
    }
}

/// The one conversion of core errors: `?` on a core `Result` raises the matching
/// `rtrec.errors` exception.
impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| to_py_err(py, err))
    }
}

fn invalid(py: Python<'_>, field: &str, reason: impl Into<String>) -> PyErr {
    to_py_err(py, Error::invalid(field, reason))
}

enum OffsetsArr<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

impl OffsetsArr<'_> {
    fn view(&self) -> PyResult<Offsets<'_>> {
        Ok(match self {
            OffsetsArr::I32(a) => Offsets::I32(a.as_slice()?),
            OffsetsArr::I64(a) => Offsets::I64(a.as_slice()?),
        })
    }
}

fn offsets_arr<'py>(obj: &Bound<'py, PyAny>, field: &str) -> PyResult<OffsetsArr<'py>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, i32>>() {
        return Ok(OffsetsArr::I32(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, i64>>() {
        return Ok(OffsetsArr::I64(a));
    }
    Err(invalid(
        obj.py(),
        field,
        "offsets must be a 1-d int32 or int64 numpy array",
    ))
}

fn opt_bytes<'py>(obj: &Bound<'py, PyAny>, field: &str) -> PyResult<Option<PyReadonlyArray1<'py, u8>>> {
    if obj.is_none() {
        return Ok(None);
    }
    obj.extract::<PyReadonlyArray1<'py, u8>>().map(Some).map_err(|_| {
        invalid(
            obj.py(),
            field,
            "validity bitmap must be a 1-d uint8 numpy array or None",
        )
    })
}

/// Owned handles on one string array's buffers, kept alive while the slices are used.
struct StrBufs<'py> {
    validity: Option<PyReadonlyArray1<'py, u8>>,
    offsets: OffsetsArr<'py>,
    data: PyReadonlyArray1<'py, u8>,
    offset: usize,
    len: usize,
}

impl StrBufs<'_> {
    fn parse<'py>(items: &[Bound<'py, PyAny>], field: &str) -> PyResult<StrBufs<'py>> {
        let py = items[0].py();
        let data = items[2]
            .extract::<PyReadonlyArray1<'py, u8>>()
            .map_err(|_| invalid(py, field, "data buffer must be a 1-d uint8 numpy array"))?;
        Ok(StrBufs {
            validity: opt_bytes(&items[0], field)?,
            offsets: offsets_arr(&items[1], field)?,
            data,
            offset: items[3]
                .extract()
                .map_err(|_| invalid(py, field, "offset must be a non-negative int"))?,
            len: items[4]
                .extract()
                .map_err(|_| invalid(py, field, "length must be a non-negative int"))?,
        })
    }

    fn view(&self) -> PyResult<StrArray<'_>> {
        Ok(StrArray {
            validity: self.validity.as_ref().map(|v| v.as_slice()).transpose()?,
            offsets: self.offsets.view()?,
            data: self.data.as_slice()?,
            offset: self.offset,
            len: self.len,
        })
    }
}

enum ColBufs<'py> {
    Single(StrBufs<'py>),
    Multi {
        validity: Option<PyReadonlyArray1<'py, u8>>,
        offsets: OffsetsArr<'py>,
        offset: usize,
        len: usize,
        values: StrBufs<'py>,
    },
}

impl ColBufs<'_> {
    fn view(&self) -> PyResult<Column<'_>> {
        Ok(match self {
            ColBufs::Single(s) => Column::Single(s.view()?),
            ColBufs::Multi {
                validity,
                offsets,
                offset,
                len,
                values,
            } => Column::Multi(ListArray {
                validity: validity.as_ref().map(|v| v.as_slice()).transpose()?,
                offsets: offsets.view()?,
                offset: *offset,
                len: *len,
                values: values.view()?,
            }),
        })
    }
}

fn parse_column<'py>(obj: &Bound<'py, PyAny>, field: &str) -> PyResult<ColBufs<'py>> {
    let py = obj.py();
    let tup = obj
        .cast::<PyTuple>()
        .map_err(|_| invalid(py, field, "column must be a buffer tuple"))?;
    let items: Vec<Bound<'py, PyAny>> = tup.iter().collect();
    let kind: String = items.first().map(|k| k.extract()).transpose()?.unwrap_or_default();
    match (kind.as_str(), items.len()) {
        ("str", 6) => Ok(ColBufs::Single(StrBufs::parse(&items[1..], field)?)),
        ("list", 10) => Ok(ColBufs::Multi {
            validity: opt_bytes(&items[1], field)?,
            offsets: offsets_arr(&items[2], field)?,
            offset: items[3].extract()?,
            len: items[4].extract()?,
            values: StrBufs::parse(&items[5..], field)?,
        }),
        _ => Err(invalid(
            py,
            field,
            "column tuple must be ('str', 5 buffers) or ('list', 9 buffers)",
        )),
    }
}

/// Run `f` under `m` holding the GIL when the lock is free: for a request's small reads, which
/// take microseconds, less than handing the GIL to another thread and waiting for it back. When
/// another thread holds the lock (the learner writing), wait for it with the GIL released.
/// `None` when the lock is poisoned.
fn quick<M: Send, T: Send>(py: Python<'_>, m: &Mutex<M>, f: impl FnOnce(&mut M) -> T + Send) -> Option<T> {
    match m.try_lock() {
        Ok(mut g) => Some(f(&mut g)),
        Err(TryLockError::WouldBlock) => py.detach(|| m.lock().ok().map(|mut g| f(&mut g))),
        Err(TryLockError::Poisoned(_)) => None,
    }
}

/// Rows a linear-model read scores holding the GIL (a request's candidates); more, it lets go.
const QUICK_INDICES: usize = 1 << 16;

/// CSR rows as numpy arrays: (values, offsets).
type Csr<'py, T> = (Bound<'py, PyArray1<T>>, Bound<'py, PyArray1<i64>>);

/// Hashes named string columns into feature indices. See `rtrec._native.pyi`.
#[pyclass(module = "rtrec._native", frozen)]
struct FeatureHasher {
    inner: CoreHasher,
    seed: u32,
    crosses: Vec<(String, String)>,
    signed: bool,
}

#[pymethods]
impl FeatureHasher {
    #[new]
    #[pyo3(signature = (namespaces, *, bits = 20, seed = 0, crosses = Vec::new(), signed = false, emit = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        namespaces: Vec<String>,
        bits: u32,
        seed: u32,
        crosses: Vec<(String, String)>,
        signed: bool,
        emit: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let mut inner = CoreHasher::new(namespaces, &crosses, bits, seed, signed)?;
        if let Some(names) = emit {
            inner = inner.emit_only(&names)?;
        }
        Ok(FeatureHasher {
            inner,
            seed,
            crosses,
            signed,
        })
    }

    #[getter]
    fn namespaces(&self) -> Vec<String> {
        self.inner.namespaces().to_vec()
    }

    #[getter]
    fn bits(&self) -> u32 {
        self.inner.bits()
    }

    #[getter]
    fn seed(&self) -> u32 {
        self.seed
    }

    #[getter]
    fn crosses(&self) -> Vec<(String, String)> {
        self.crosses.clone()
    }

    #[getter]
    fn signed(&self) -> bool {
        self.signed
    }

    /// Seed of namespace `name`: murmur3_32(name, seed).
    fn namespace_seed(&self, py: Python<'_>, name: &str) -> PyResult<u32> {
        let i = self
            .inner
            .namespaces()
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| invalid(py, "namespace", format!("{name:?} is not one of the namespaces")))?;
        Ok(self.inner.seed_of(i))
    }

    #[pyo3(signature = (columns, stats = false))]
    fn hash_buffers<'py>(
        &self,
        py: Python<'py>,
        columns: Vec<Bound<'py, PyAny>>,
        stats: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let names = self.inner.namespaces();
        let bufs: Vec<ColBufs<'py>> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| parse_column(c, names.get(i).map_or("columns", |s| s.as_str())))
            .collect::<PyResult<_>>()?;
        let cols: Vec<Column<'_>> = bufs.iter().map(|b| b.view()).collect::<PyResult<_>>()?;
        let result = py.detach(|| self.inner.hash(&cols, stats));
        let (hashed, st) = result?;
        let indices = hashed.indices.into_pyarray(py);
        let offsets = hashed.offsets.into_pyarray(py);
        let signs: Bound<'py, PyAny> = match hashed.signs {
            Some(s) => s.into_pyarray(py).into_any(),
            None => py.None().into_bound(py),
        };
        let stats_obj: Bound<'py, PyAny> = match st {
            Some(s) => {
                let d = PyDict::new(py);
                d.set_item("features", s.features)?;
                d.set_item("distinct_inputs", s.distinct_inputs)?;
                d.set_item("distinct_buckets", s.distinct_buckets)?;
                d.into_any()
            }
            None => py.None().into_bound(py),
        };
        PyTuple::new(py, [indices.into_any(), offsets.into_any(), signs, stats_obj])
    }

    /// Raw 32-bit hashes of one namespace's column, per row: `(values, offsets)`.
    fn raw_hashes<'py>(&self, py: Python<'py>, name: &str, column: Bound<'py, PyAny>) -> PyResult<Csr<'py, u32>> {
        let bufs = parse_column(&column, name)?;
        let col = bufs.view()?;
        let (values, offsets) = py.detach(|| self.inner.raw_hashes(name, &col))?;
        Ok((values.into_pyarray(py), offsets.into_pyarray(py)))
    }

    /// Hash rows from raw hashes, one part per namespace; keeps the GIL (a request's few
    /// hundred rows take microseconds). See `rtrec._native.pyi`.
    #[pyo3(signature = (parts, idx, distinct = false, tag = 0))]
    fn hash_raw<'py>(
        &self,
        py: Python<'py>,
        parts: Vec<Bound<'py, PyAny>>,
        idx: PyReadonlyArray1<'py, i64>,
        distinct: bool,
        tag: u32,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let names = self.inner.namespaces();
        if parts.len() != names.len() {
            return Err(invalid(
                py,
                "parts",
                format!(
                    "expected {} parts (one per namespace), got {}",
                    names.len(),
                    parts.len()
                ),
            ));
        }
        enum Held<'py> {
            Same(Vec<u32>),
            Table(PyReadonlyArray1<'py, u32>, PyReadonlyArray1<'py, i64>),
        }
        let mut held = Vec::with_capacity(parts.len());
        for (i, (p, ns)) in parts.iter().zip(names).enumerate() {
            held.push(if p.is_none() {
                Held::Same(Vec::new())
            } else if let Ok(v) = p.extract::<String>() {
                Held::Same(vec![murmur(v.as_bytes(), self.inner.seed_of(i))])
            } else if let Ok((values, offsets)) =
                p.extract::<(PyReadonlyArray1<'py, u32>, PyReadonlyArray1<'py, i64>)>()
            {
                Held::Table(values, offsets)
            } else {
                return Err(invalid(
                    py,
                    ns,
                    "part must be None, a str, or (uint32 values, int64 offsets) numpy arrays",
                ));
            });
        }
        let raw: Vec<RawPart<'_>> = held
            .iter()
            .map(|h| {
                Ok(match h {
                    Held::Same(v) => RawPart::Same(v),
                    Held::Table(values, offsets) => RawPart::Table {
                        values: values.as_slice()?,
                        offsets: offsets.as_slice()?,
                    },
                })
            })
            .collect::<PyResult<_>>()?;
        let hashed = self.inner.hash_raw(&raw, idx.as_slice()?, distinct, tag)?;
        let signs: Bound<'py, PyAny> = match hashed.signs {
            Some(s) => s.into_pyarray(py).into_any(),
            None => py.None().into_bound(py),
        };
        PyTuple::new(
            py,
            [
                hashed.indices.into_pyarray(py).into_any(),
                hashed.offsets.into_pyarray(py).into_any(),
                signs,
            ],
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "FeatureHasher(namespaces={:?}, bits={}, seed={}, crosses={:?}, signed={})",
            self.inner.namespaces(),
            self.inner.bits(),
            self.seed,
            self.crosses,
            if self.signed { "True" } else { "False" }
        )
    }
}

/// MurmurHash3 x86_32 of `data` (bytes or str, UTF-8 encoded) with `seed`.
#[pyfunction]
#[pyo3(signature = (data, seed = 0))]
fn murmur3_32(data: &Bound<'_, PyAny>, seed: u32) -> PyResult<u32> {
    if let Ok(s) = data.extract::<&str>() {
        return Ok(murmur(s.as_bytes(), seed));
    }
    let b = data
        .cast::<PyBytes>()
        .map_err(|_| invalid(data.py(), "data", "must be str or bytes"))?;
    Ok(murmur(b.as_bytes(), seed))
}

fn matrix<'a>(a: &'a PyReadonlyArray2<'_, f32>, name: &str) -> PyResult<Matrix<'a>> {
    let (rows, cols) = a.as_array().dim();
    Ok(Matrix::new(a.as_slice()?, rows, cols, name)?)
}

type LayerArrays<'py> = (PyReadonlyArray2<'py, f32>, PyReadonlyArray1<'py, f32>);

fn linear<'a>(l: &'a LayerArrays<'_>, name: &str) -> PyResult<Linear<'a>> {
    Ok(Linear {
        weight: matrix(&l.0, name)?,
        bias: l.1.as_slice()?,
    })
}

/// The CTR model's logits for CSR rows, computed holding the GIL. See `rtrec._native.pyi`.
/// Concatenate CSR blocks row by row (keeps the GIL: a request's rows). See `rtrec._native.pyi`.
#[pyfunction]
fn merge_rows<'py>(
    py: Python<'py>,
    blocks: Vec<(PyReadonlyArray1<'py, i64>, PyReadonlyArray1<'py, i64>)>,
) -> PyResult<Csr<'py, i64>> {
    let views: Vec<(&[i64], &[i64])> = blocks
        .iter()
        .map(|(i, o)| Ok((i.as_slice()?, o.as_slice()?)))
        .collect::<PyResult<_>>()?;
    let (indices, offsets) = merge_csr(&views)?;
    Ok((indices.into_pyarray(py), offsets.into_pyarray(py)))
}

#[pyfunction]
#[pyo3(signature = (table, norm2, indices, offsets, dense, layers, bias, dense_lin = None, text = None, item_text = None))]
#[allow(clippy::too_many_arguments)]
fn ctr_logits<'py>(
    py: Python<'py>,
    table: PyReadonlyArray2<'py, f32>,
    norm2: PyReadonlyArray1<'py, f32>,
    indices: PyReadonlyArray1<'py, i64>,
    offsets: PyReadonlyArray1<'py, i64>,
    dense: PyReadonlyArray2<'py, f32>,
    layers: Vec<LayerArrays<'py>>,
    bias: f32,
    dense_lin: Option<PyReadonlyArray1<'py, f32>>,
    text: Option<LayerArrays<'py>>,
    item_text: Option<PyReadonlyArray2<'py, f32>>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let params = CtrParams {
        table: matrix(&table, "table")?,
        norm2: norm2.as_slice()?,
        text: text.as_ref().map(|t| linear(t, "text")).transpose()?,
        layers: layers.iter().map(|l| linear(l, "layers")).collect::<PyResult<_>>()?,
        dense_lin: dense_lin.as_ref().map(|u| u.as_slice()).transpose()?,
        bias,
    };
    let item_text = item_text.as_ref().map(|t| matrix(t, "item_text")).transpose()?;
    let out = score_rows(
        &params,
        indices.as_slice()?,
        offsets.as_slice()?,
        matrix(&dense, "dense")?,
        item_text,
    )?;
    Ok(out.into_pyarray(py))
}

/// Thread-safe replay ring buffer. See `rtrec._native.pyi`.
#[pyclass(module = "rtrec._native", frozen)]
struct ReplayBuffer {
    ring: Mutex<Ring>,
}

fn poisoned() -> PyErr {
    PyRuntimeError::new_err("replay buffer lock poisoned by an earlier panic")
}

/// Run `f` on the ring with the GIL released (the lock may wait on another thread).
fn with_ring<T: Send>(py: Python<'_>, m: &Mutex<Ring>, f: impl FnOnce(&mut Ring) -> T + Send) -> PyResult<T> {
    py.detach(|| m.lock().ok().map(|mut r| f(&mut r))).ok_or_else(poisoned)
}

fn rows_to_dict<'py>(py: Python<'py>, rows: Rows, dense_dim: usize) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let n = rows.len();
    d.set_item("indices", rows.indices.into_pyarray(py))?;
    d.set_item("offsets", rows.offsets.into_pyarray(py))?;
    d.set_item("labels", rows.labels.into_pyarray(py))?;
    d.set_item("weights", rows.weights.into_pyarray(py))?;
    d.set_item("ts", rows.ts.into_pyarray(py))?;
    d.set_item("row_ids", rows.row_ids.into_pyarray(py))?;
    d.set_item("seqs", rows.seqs.into_pyarray(py))?;
    let dense: Bound<'py, PyArray1<f32>> = rows.dense.into_pyarray(py);
    d.set_item("dense", dense.reshape([n, dense_dim])?)?;
    Ok(d)
}

fn strategy(py: Python<'_>, name: &str, half_life: Option<f64>) -> PyResult<Strategy> {
    let need =
        |hl: Option<f64>| hl.ok_or_else(|| invalid(py, "half_life", format!("is required for strategy {name:?}")));
    Ok(match name {
        "uniform" => Strategy::Uniform,
        "recency" | "recency_events" => Strategy::RecencyEvents(need(half_life)?),
        "recency_seconds" => Strategy::RecencySeconds(need(half_life)?),
        "balanced" => Strategy::Balanced,
        other => {
            return Err(invalid(
                py,
                "strategy",
                format!("{other:?} is not one of uniform, recency, recency_seconds, balanced"),
            ))
        }
    })
}

#[pymethods]
impl ReplayBuffer {
    #[new]
    #[pyo3(signature = (capacity, *, dense_dim = 0, seed = 0))]
    fn new(capacity: usize, dense_dim: usize, seed: u64) -> PyResult<Self> {
        Ok(ReplayBuffer {
            ring: Mutex::new(Ring::new(capacity, dense_dim, seed)?),
        })
    }

    #[pyo3(signature = (indices, offsets, labels, weights, ts, row_ids = None, dense = None))]
    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        py: Python<'_>,
        indices: PyReadonlyArray1<'_, i64>,
        offsets: PyReadonlyArray1<'_, i64>,
        labels: PyReadonlyArray1<'_, f32>,
        weights: PyReadonlyArray1<'_, f32>,
        ts: PyReadonlyArray1<'_, f64>,
        row_ids: Option<PyReadonlyArray1<'_, i64>>,
        dense: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let dense_arr = match &dense {
            Some(obj) if !obj.is_none() => Some(
                obj.call_method1("reshape", (-1,))?
                    .extract::<PyReadonlyArray1<'_, f32>>()
                    .map_err(|_| invalid(py, "dense", "must be a float32 numpy array of shape (rows, dense_dim)"))?,
            ),
            _ => None,
        };
        let batch = PushBatch {
            indices: indices.as_slice()?,
            offsets: offsets.as_slice()?,
            labels: labels.as_slice()?,
            weights: weights.as_slice()?,
            ts: ts.as_slice()?,
            row_ids: row_ids.as_ref().map(|a| a.as_slice()).transpose()?,
            dense: dense_arr.as_ref().map(|a| a.as_slice()).transpose()?,
        };
        with_ring(py, &self.ring, |r| r.push(&batch))?.map_err(PyErr::from)
    }

    #[pyo3(signature = (n, strategy = "uniform", half_life = None, seed = None))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        strategy: &str,
        half_life: Option<f64>,
        seed: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let strat = self::strategy(py, strategy, half_life)?;
        let (rows, dd) = with_ring(py, &self.ring, |r| (r.sample(n, strat, seed), r.dense_dim()))?;
        rows_to_dict(py, rows?, dd)
    }

    /// Every stored row, oldest first.
    fn rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (rows, dd) = with_ring(py, &self.ring, |r| (r.rows(), r.dense_dim()))?;
        rows_to_dict(py, rows, dd)
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = with_ring(py, &self.ring, |r| r.to_bytes())?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let owned = data.to_vec();
        let ring = py.detach(|| Ring::from_bytes(&owned))?;
        Ok(ReplayBuffer { ring: Mutex::new(ring) })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        with_ring(py, &self.ring, |r| r.len())
    }

    #[getter]
    fn capacity(&self, py: Python<'_>) -> PyResult<usize> {
        with_ring(py, &self.ring, |r| r.capacity())
    }

    #[getter]
    fn dense_dim(&self, py: Python<'_>) -> PyResult<usize> {
        with_ring(py, &self.ring, |r| r.dense_dim())
    }

    #[getter]
    fn pushed(&self, py: Python<'_>) -> PyResult<u64> {
        with_ring(py, &self.ring, |r| r.pushed())
    }

    #[getter]
    fn positives(&self, py: Python<'_>) -> PyResult<usize> {
        with_ring(py, &self.ring, |r| r.positives())
    }

    /// Remove every row holding the feature index ``feature`` (for example a forgotten
    /// user's id feature); returns how many were removed.
    fn forget_feature(&self, py: Python<'_>, feature: u32) -> PyResult<usize> {
        with_ring(py, &self.ring, |r| r.forget_feature(feature))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        with_ring(py, &self.ring, |r| {
            format!(
                "ReplayBuffer(len={}, capacity={}, dense_dim={}, pushed={})",
                r.len(),
                r.capacity(),
                r.dense_dim(),
                r.pushed()
            )
        })
    }
}

/// Per-example online logistic regression over hashed features. See `rtrec._native.pyi`.
#[pyclass(module = "rtrec._native", frozen)]
struct OnlineLinear {
    inner: Mutex<CoreLinear>,
}

fn with_linear<T: Send>(
    py: Python<'_>,
    m: &Mutex<CoreLinear>,
    f: impl FnOnce(&mut CoreLinear) -> T + Send,
) -> PyResult<T> {
    py.detach(|| m.lock().ok().map(|mut r| f(&mut r)))
        .ok_or_else(linear_poisoned)
}

fn linear_poisoned() -> PyErr {
    PyRuntimeError::new_err("linear model lock poisoned by an earlier panic")
}

#[pymethods]
impl OnlineLinear {
    #[new]
    #[pyo3(signature = (bits, lr = 0.5))]
    fn new(bits: u32, lr: f32) -> PyResult<Self> {
        Ok(OnlineLinear {
            inner: Mutex::new(CoreLinear::new(bits, lr)?),
        })
    }

    fn predict<'py>(
        &self,
        py: Python<'py>,
        indices: PyReadonlyArray1<'py, i64>,
        offsets: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let (i, o) = (indices.as_slice()?, offsets.as_slice()?);
        let out = if i.len() <= QUICK_INDICES {
            quick(py, &self.inner, |m| m.predict(i, o)).ok_or_else(linear_poisoned)?
        } else {
            with_linear(py, &self.inner, |m| m.predict(i, o))?
        }?;
        Ok(out.into_pyarray(py))
    }

    fn predict_learn<'py>(
        &self,
        py: Python<'py>,
        indices: PyReadonlyArray1<'py, i64>,
        offsets: PyReadonlyArray1<'py, i64>,
        labels: PyReadonlyArray1<'py, f32>,
        weights: PyReadonlyArray1<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let (i, o, l, w) = (
            indices.as_slice()?,
            offsets.as_slice()?,
            labels.as_slice()?,
            weights.as_slice()?,
        );
        let out = with_linear(py, &self.inner, |m| m.predict_learn(i, o, l, w))??;
        Ok(out.into_pyarray(py))
    }

    /// Scale the accumulated squared gradients by `factor` in (0, 1] (faster steps after drift).
    fn forget(&self, py: Python<'_>, factor: f32) -> PyResult<()> {
        with_linear(py, &self.inner, |m| m.forget(factor))?.map_err(PyErr::from)
    }

    /// (weights, squared-gradient sums, bias, bias squared-gradient sum, lr).
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (w, s, b, bs, lr) = with_linear(py, &self.inner, |m| {
            let (w, s, b, bs, lr) = m.state();
            (w.to_vec(), s.to_vec(), b, bs, lr)
        })?;
        PyTuple::new(
            py,
            [
                w.into_pyarray(py).into_any(),
                s.into_pyarray(py).into_any(),
                b.into_pyobject(py)?.into_any(),
                bs.into_pyobject(py)?.into_any(),
                lr.into_pyobject(py)?.into_any(),
            ],
        )
    }

    #[staticmethod]
    fn from_state(
        weights: PyReadonlyArray1<'_, f32>,
        sq_sum: PyReadonlyArray1<'_, f32>,
        bias: f32,
        bias_sq: f32,
        lr: f32,
    ) -> PyResult<Self> {
        let inner = CoreLinear::from_state(
            weights.as_slice()?.to_vec(),
            sq_sum.as_slice()?.to_vec(),
            bias,
            bias_sq,
            lr,
        )?;
        Ok(OnlineLinear {
            inner: Mutex::new(inner),
        })
    }
}

/// Time-decayed item-to-item co-visitation with bounded neighbour lists. See `rtrec._native.pyi`.
#[pyclass(module = "rtrec._native", frozen)]
struct CoVisitation {
    inner: Mutex<CoreCoVisitation>,
}

fn with_covisit<T: Send>(
    py: Python<'_>,
    m: &Mutex<CoreCoVisitation>,
    f: impl FnOnce(&mut CoreCoVisitation) -> T + Send,
) -> PyResult<T> {
    py.detach(|| m.lock().ok().map(|mut r| f(&mut r)))
        .ok_or_else(covisit_poisoned)
}

/// A request's read of the co-visitation lists: [`quick`].
fn covisit_read<T: Send>(
    py: Python<'_>,
    m: &Mutex<CoreCoVisitation>,
    f: impl FnOnce(&mut CoreCoVisitation) -> T + Send,
) -> PyResult<T> {
    quick(py, m, f).ok_or_else(covisit_poisoned)
}

fn covisit_poisoned() -> PyErr {
    PyRuntimeError::new_err("co-visitation lock poisoned by an earlier panic")
}

type Scored<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>);

fn scored(py: Python<'_>, v: Vec<(u32, f32)>) -> Scored<'_> {
    let idx: Vec<i64> = v.iter().map(|e| e.0 as i64).collect();
    let s: Vec<f32> = v.iter().map(|e| e.1).collect();
    (idx.into_pyarray(py), s.into_pyarray(py))
}

#[pymethods]
impl CoVisitation {
    #[new]
    #[pyo3(signature = (max_neighbours = 32, history = 20, half_life_s = f64::INFINITY))]
    fn new(max_neighbours: usize, history: usize, half_life_s: f64) -> PyResult<Self> {
        Ok(CoVisitation {
            inner: Mutex::new(CoreCoVisitation::new(max_neighbours, history, half_life_s)?),
        })
    }

    fn observe(
        &self,
        py: Python<'_>,
        users: PyReadonlyArray1<'_, i64>,
        items: PyReadonlyArray1<'_, i64>,
        ts: PyReadonlyArray1<'_, f64>,
        weights: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<()> {
        let (u, i, t, w) = (
            users.as_slice()?,
            items.as_slice()?,
            ts.as_slice()?,
            weights.as_slice()?,
        );
        Ok(with_covisit(py, &self.inner, |c| c.observe(u, i, t, w))??)
    }

    fn retract(
        &self,
        py: Python<'_>,
        user: i64,
        items: PyReadonlyArray1<'_, i64>,
        ts: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<u64> {
        let (i, t) = (items.as_slice()?, ts.as_slice()?);
        Ok(with_covisit(py, &self.inner, |c| c.retract(user, i, t))??)
    }

    fn history<'py>(&self, py: Python<'py>, user: i64) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let h = covisit_read(py, &self.inner, |c| c.history(user))?;
        Ok(h.into_iter().map(i64::from).collect::<Vec<_>>().into_pyarray(py))
    }

    fn neighbours<'py>(&self, py: Python<'py>, item: i64, k: usize) -> PyResult<Scored<'py>> {
        let v = covisit_read(py, &self.inner, |c| c.neighbours(item, k))?;
        Ok(scored(py, v))
    }

    #[pyo3(signature = (user, k, exclude = None))]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        user: i64,
        k: usize,
        exclude: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Scored<'py>> {
        let ex: &[i64] = match &exclude {
            Some(a) => a.as_slice()?,
            None => &[],
        };
        let v = covisit_read(py, &self.inner, |c| c.recommend(user, k, ex))?;
        Ok(scored(py, v))
    }

    fn score<'py>(
        &self,
        py: Python<'py>,
        user: i64,
        items: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let i = items.as_slice()?;
        Ok(covisit_read(py, &self.inner, |c| c.score(user, i))?.into_pyarray(py))
    }

    fn forget_user(&self, py: Python<'_>, user: i64) -> PyResult<bool> {
        with_covisit(py, &self.inner, |c| c.forget_user(user))
    }

    #[getter]
    fn items(&self, py: Python<'_>) -> PyResult<usize> {
        with_covisit(py, &self.inner, |c| c.items())
    }

    #[getter]
    fn users(&self, py: Python<'_>) -> PyResult<usize> {
        with_covisit(py, &self.inner, |c| c.users())
    }

    #[getter]
    fn pairs(&self, py: Python<'_>) -> PyResult<u64> {
        with_covisit(py, &self.inner, |c| c.pairs())
    }

    #[getter]
    fn settings(&self, py: Python<'_>) -> PyResult<(usize, usize, f64)> {
        with_covisit(py, &self.inner, |c| c.settings())
    }

    #[getter]
    fn memory_bytes(&self, py: Python<'_>) -> PyResult<usize> {
        with_covisit(py, &self.inner, |c| c.memory_bytes())
    }

    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = with_covisit(py, &self.inner, |c| c.to_bytes())?;
        Ok(PyBytes::new(py, &b))
    }

    #[staticmethod]
    fn from_state(data: &[u8]) -> PyResult<Self> {
        Ok(CoVisitation {
            inner: Mutex::new(CoreCoVisitation::from_bytes(data)?),
        })
    }
}

/// The labeller's waiting impressions: key indexes and deadline queues. See `rtrec._native.pyi`.
#[pyclass(module = "rtrec._native", frozen)]
struct PendingImpressions {
    inner: Mutex<Waiting>,
}

/// The store's slot columns as one call borrows them.
struct StoreCols<'py> {
    key: PyReadonlyArray1<'py, i64>,
    rid: PyReadonlyArray1<'py, i64>,
    seq: PyReadonlyArray1<'py, i64>,
    deadline: PyReadonlyArray1<'py, i64>,
    state: PyReadwriteArray1<'py, i8>,
    next: PyReadwriteArray1<'py, i64>,
}

impl<'py> StoreCols<'py> {
    fn parse(py: Python<'py>, cols: &Bound<'py, PyTuple>) -> PyResult<Self> {
        if cols.len() != 6 {
            return Err(invalid(py, "store", "expected (key, rid, seq, deadline, state, next)"));
        }
        let get = |i: usize| cols.get_item(i);
        let ro = |i: usize, name: &str| -> PyResult<PyReadonlyArray1<'py, i64>> {
            get(i)?
                .extract()
                .map_err(|_| invalid(py, name, "expected a contiguous int64 array"))
        };
        let out = StoreCols {
            key: ro(0, "store.key")?,
            rid: ro(1, "store.rid")?,
            seq: ro(2, "store.seq")?,
            deadline: ro(3, "store.deadline")?,
            state: get(4)?
                .extract()
                .map_err(|_| invalid(py, "store.state", "expected a writable int8 array"))?,
            next: get(5)?
                .extract()
                .map_err(|_| invalid(py, "store.next", "expected a writable int64 array"))?,
        };
        let n = out.key.len()?;
        let lens = [
            out.rid.len()?,
            out.seq.len()?,
            out.deadline.len()?,
            out.state.len()?,
            out.next.len()?,
        ];
        if lens.iter().any(|&l| l != n) {
            return Err(invalid(py, "store", "columns differ in length"));
        }
        Ok(out)
    }

    fn len(&self) -> usize {
        self.key.len().unwrap_or(0)
    }

    fn slots(&mut self) -> PyResult<Slots<'_>> {
        Ok(Slots {
            key: self.key.as_slice()?,
            rid: self.rid.as_slice()?,
            seq: self.seq.as_slice()?,
            deadline: self.deadline.as_slice()?,
            state: self.state.as_slice_mut()?,
            next: self.next.as_slice_mut()?,
        })
    }
}

fn check_slots(py: Python<'_>, field: &str, slots: &[i64], n: usize) -> PyResult<()> {
    match slots.iter().find(|&&s| s >= n as i64 || s < -1) {
        Some(s) => Err(invalid(py, field, format!("slot {s} is outside the store of {n}"))),
        None => Ok(()),
    }
}

type ResolvedArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<i8>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

fn resolved_arrays(py: Python<'_>, r: Resolved) -> ResolvedArrays<'_> {
    (
        r.slot.into_pyarray(py),
        r.label.into_pyarray(py),
        r.weight.into_pyarray(py),
        r.origin.into_pyarray(py),
        r.order.into_pyarray(py),
        r.event_rows.into_pyarray(py),
        r.freed.into_pyarray(py),
    )
}

fn with_waiting<T: Send>(py: Python<'_>, m: &Mutex<Waiting>, f: impl FnOnce(&mut Waiting) -> T + Send) -> PyResult<T> {
    py.detach(|| m.lock().ok().map(|mut w| f(&mut w)))
        .ok_or_else(|| PyRuntimeError::new_err("pending-impressions lock poisoned by an earlier panic"))
}

#[pymethods]
impl PendingImpressions {
    #[new]
    fn new(retention_us: i64, cap: usize) -> Self {
        PendingImpressions {
            inner: Mutex::new(Waiting::new(retention_us, cap)),
        }
    }

    fn in_play<'py>(
        &self,
        py: Python<'py>,
        keys: PyReadonlyArray1<'py, i64>,
        is_impression: PyReadonlyArray1<'py, bool>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let (k, imp) = (keys.as_slice()?, is_impression.as_slice()?);
        if k.len() != imp.len() {
            return Err(invalid(py, "is_impression", "differs in length from keys"));
        }
        Ok(with_waiting(py, &self.inner, |w| w.in_play(k, imp))?.into_pyarray(py))
    }

    #[allow(clippy::too_many_arguments)]
    fn plan<'py>(
        &self,
        py: Python<'py>,
        store: &Bound<'py, PyTuple>,
        cand: PyReadonlyArray1<'py, i64>,
        slot: PyReadonlyArray1<'py, i64>,
        key: PyReadonlyArray1<'py, i64>,
        rid: PyReadonlyArray1<'py, i64>,
        label: PyReadonlyArray1<'py, f32>,
        weight: PyReadonlyArray1<'py, f32>,
        watermark: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<ResolvedArrays<'py>> {
        let mut cols = StoreCols::parse(py, store)?;
        let rows = PlanRows {
            cand: cand.as_slice()?,
            slot: slot.as_slice()?,
            key: key.as_slice()?,
            rid: rid.as_slice()?,
            label: label.as_slice()?,
            weight: weight.as_slice()?,
            watermark: watermark.as_slice()?,
        };
        let n = rows.slot.len();
        let same = [
            rows.key.len(),
            rows.rid.len(),
            rows.label.len(),
            rows.weight.len(),
            rows.watermark.len(),
        ];
        if same.iter().any(|&l| l != n) {
            return Err(invalid(py, "rows", "columns differ in length"));
        }
        if rows.cand.iter().any(|&r| r < 0 || r >= n as i64) || rows.cand.windows(2).any(|p| p[0] >= p[1]) {
            return Err(invalid(py, "cand", "rows must be ascending and within the chunk"));
        }
        check_slots(py, "slot", rows.slot, cols.len())?;
        let mut s = cols.slots()?;
        let out = with_waiting(py, &self.inner, |w| w.plan(&mut s, &rows))?;
        Ok(resolved_arrays(py, out))
    }

    #[pyo3(signature = (store, limit, horizon))]
    fn expire<'py>(
        &self,
        py: Python<'py>,
        store: &Bound<'py, PyTuple>,
        limit: Option<i64>,
        horizon: Option<i64>,
    ) -> PyResult<ResolvedArrays<'py>> {
        let mut cols = StoreCols::parse(py, store)?;
        let mut s = cols.slots()?;
        let out = with_waiting(py, &self.inner, |w| w.expire(&mut s, limit, horizon))?;
        Ok(resolved_arrays(py, out))
    }

    fn rebuild<'py>(
        &self,
        py: Python<'py>,
        store: &Bound<'py, PyTuple>,
        pending: PyReadonlyArray1<'py, i64>,
        kept: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<()> {
        let mut cols = StoreCols::parse(py, store)?;
        let (p, k) = (pending.as_slice()?, kept.as_slice()?);
        for (field, v) in [("pending", p), ("kept", k)] {
            check_slots(py, field, v, cols.len())?;
            if v.iter().any(|&x| x < 0) {
                return Err(invalid(py, field, "slots must be non-negative"));
            }
        }
        let s = cols.slots()?;
        with_waiting(py, &self.inner, |w| w.rebuild(&s, p, k))
    }

    #[getter]
    fn n_pending(&self, py: Python<'_>) -> PyResult<usize> {
        with_waiting(py, &self.inner, |w| w.n_pending)
    }

    #[getter]
    fn n_retained(&self, py: Python<'_>) -> PyResult<usize> {
        with_waiting(py, &self.inner, |w| w.n_retained)
    }

    #[getter]
    fn is_empty(&self, py: Python<'_>) -> PyResult<bool> {
        with_waiting(py, &self.inner, |w| w.is_empty())
    }

    #[getter]
    fn memory_bytes(&self, py: Python<'_>) -> PyResult<usize> {
        with_waiting(py, &self.inner, |w| w.memory_bytes())
    }

    #[getter]
    fn expired_early(&self, py: Python<'_>) -> PyResult<u64> {
        with_waiting(py, &self.inner, |w| w.expired_early)
    }

    #[setter]
    fn set_expired_early(&self, py: Python<'_>, v: u64) -> PyResult<()> {
        with_waiting(py, &self.inner, |w| w.expired_early = v)
    }

    #[getter]
    fn dropped(&self, py: Python<'_>) -> PyResult<u64> {
        with_waiting(py, &self.inner, |w| w.dropped)
    }

    #[setter]
    fn set_dropped(&self, py: Python<'_>, v: u64) -> PyResult<()> {
        with_waiting(py, &self.inner, |w| w.dropped = v)
    }
}

fn str_column<'py>(py: Python<'py>, c: StrColumn) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            PyBytes::new(py, &c.data).into_any(),
            c.offsets.into_pyarray(py).into_any(),
            c.valid.into_pyarray(py).into_any(),
        ],
    )
}

fn num_column<'py>(py: Python<'py>, c: NumColumn) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            c.values.into_pyarray(py).into_any(),
            c.valid.into_pyarray(py).into_any(),
        ],
    )
}

/// The columns of a posted JSON event batch whose rows are all of the simple shape and valid,
/// parsed with the GIL released; None when the validator must see the rows. See `_native.pyi`.
#[pyfunction]
#[pyo3(signature = (body, types, latest_us, oldest_us, max_id_chars, max_rows))]
fn parse_simple_events<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyBytes>,
    types: Vec<String>,
    latest_us: i64,
    oldest_us: i64,
    max_id_chars: usize,
    max_rows: usize,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let bytes = body.as_bytes();
    let lim = EventLimits {
        latest_us,
        oldest_us,
        max_id_chars,
        max_rows,
        types: &types,
    };
    let Some(ev) = py.detach(|| parse_simple(bytes, &lim)) else {
        return Ok(None);
    };
    let n = ev.len();
    let items: Vec<Bound<'py, PyAny>> = vec![
        n.into_pyobject(py)?.into_any(),
        ev.ts_us.into_pyarray(py).into_any(),
        str_column(py, ev.event_id)?.into_any(),
        str_column(py, ev.user_id)?.into_any(),
        str_column(py, ev.item_id)?.into_any(),
        str_column(py, ev.event_type)?.into_any(),
        num_column(py, ev.value)?.into_any(),
        str_column(py, ev.request_id)?.into_any(),
        num_column(py, ev.propensity)?.into_any(),
    ];
    Ok(Some(PyTuple::new(py, items)?))
}

/// The items each user touched, one compact vector per user. See `rtrec._native.pyi`.
///
/// Every method holds the GIL while it holds the lock (none releases it): each call is short,
/// and a reader never waits for the interpreter while a writer holds the sets.
#[pyclass(module = "rtrec._native", frozen)]
struct ItemSets {
    inner: Mutex<CoreItemSets>,
}

impl ItemSets {
    fn sets(&self) -> PyResult<std::sync::MutexGuard<'_, CoreItemSets>> {
        self.inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("item sets lock poisoned by an earlier panic"))
    }
}

#[pymethods]
impl ItemSets {
    #[new]
    #[pyo3(signature = (max_per_user = 0))]
    fn new(max_per_user: usize) -> Self {
        ItemSets {
            inner: Mutex::new(CoreItemSets::new(max_per_user)),
        }
    }

    fn add(&self, users: PyReadonlyArray1<'_, i64>, items: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        Ok(self.sets()?.add(users.as_slice()?, items.as_slice()?)?)
    }

    fn get<'py>(&self, py: Python<'py>, user: i64) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let v: Vec<i64> = self.sets()?.get(user).iter().map(|&i| i64::from(i)).collect();
        Ok(v.into_pyarray(py))
    }

    fn remove(&self, user: i64) -> PyResult<usize> {
        Ok(self.sets()?.remove(user))
    }

    #[getter]
    fn max_per_user(&self) -> PyResult<usize> {
        Ok(self.sets()?.max_per_user())
    }

    #[getter]
    fn users(&self) -> PyResult<usize> {
        Ok(self.sets()?.users())
    }

    #[getter]
    fn pairs(&self) -> PyResult<u64> {
        Ok(self.sets()?.pairs())
    }

    #[getter]
    fn evicted(&self) -> PyResult<u64> {
        Ok(self.sets()?.evicted())
    }

    #[getter]
    fn memory_bytes(&self) -> PyResult<usize> {
        Ok(self.sets()?.memory_bytes())
    }

    fn to_flat<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (k, n, m) = self.sets()?.to_flat();
        let parts = [k.into_pyarray(py), n.into_pyarray(py), m.into_pyarray(py)];
        PyTuple::new(py, parts)
    }

    #[staticmethod]
    #[pyo3(signature = (keys, sizes, members, max_per_user = 0))]
    fn from_flat(
        keys: PyReadonlyArray1<'_, i64>,
        sizes: PyReadonlyArray1<'_, i64>,
        members: PyReadonlyArray1<'_, i64>,
        max_per_user: usize,
    ) -> PyResult<Self> {
        let s = CoreItemSets::from_flat(keys.as_slice()?, sizes.as_slice()?, members.as_slice()?, max_per_user)?;
        Ok(ItemSets { inner: Mutex::new(s) })
    }

    fn __repr__(&self) -> PyResult<String> {
        let s = self.sets()?;
        Ok(format!(
            "ItemSets(users={}, pairs={}, max_per_user={})",
            s.users(),
            s.pairs(),
            s.max_per_user()
        ))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FeatureHasher>()?;
    m.add_class::<ReplayBuffer>()?;
    m.add_class::<OnlineLinear>()?;
    m.add_class::<CoVisitation>()?;
    m.add_class::<PendingImpressions>()?;
    m.add_class::<ItemSets>()?;
    m.add_function(wrap_pyfunction!(murmur3_32, m)?)?;
    m.add_function(wrap_pyfunction!(ctr_logits, m)?)?;
    m.add_function(wrap_pyfunction!(merge_rows, m)?)?;
    m.add_function(wrap_pyfunction!(parse_simple_events, m)?)?;
    m.add("FORMAT_VERSION", 1)?;
    Ok(())
}
