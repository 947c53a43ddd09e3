//! Event batches posted as JSON, parsed into columns without Python objects.
//!
//! [`parse_simple`] takes the common shape of a posted batch: a JSON array of objects whose
//! identifiers are strings, whose `ts` is a number, and which carry no `context`. It returns
//! columns only when it is sure that the Python validator (`rtrec.events.validate.Validator`)
//! would accept every row unchanged and produce the same values; for anything else (a row it
//! would reject, a string `ts`, a numeric id, a `context` object, text that is not JSON) it
//! returns `None` and the caller takes the Python path, which gives each row its verdict. So
//! this is a conservative mirror: it never rejects, and never accepts differently.

use serde_json::{Map, Value};

/// Integer epochs at or above this magnitude are milliseconds, below it seconds (as in Python).
const MS_THRESHOLD: f64 = 1e11;
/// Epochs at or above this magnitude are malformed (as in Python).
const MAX_EPOCH: f64 = 1e14;

/// The event fields a row may carry (`rtrec.events.schema.EVENT_INPUT_COLUMNS`).
pub const FIELDS: [&str; 9] = [
    "event_id",
    "ts",
    "user_id",
    "item_id",
    "event_type",
    "value",
    "request_id",
    "propensity",
    "context",
];

/// What a row must satisfy, as the validator's configuration sets it.
pub struct Limits<'a> {
    /// Latest accepted `ts` (epoch microseconds): the daemon's clock plus the allowed skew.
    pub latest_us: i64,
    /// Earliest accepted `ts` (epoch microseconds).
    pub oldest_us: i64,
    /// Longest identifier, in Unicode code points.
    pub max_id_chars: usize,
    /// More rows than this: not a batch for this path.
    pub max_rows: usize,
    /// The known event types.
    pub types: &'a [String],
}

/// A string column as Arrow lays it out: UTF-8 bytes, `n + 1` offsets, a validity flag per row.
#[derive(Debug, Default, PartialEq)]
pub struct StrColumn {
    pub data: Vec<u8>,
    pub offsets: Vec<i32>,
    pub valid: Vec<bool>,
}

impl StrColumn {
    fn new(n: usize) -> StrColumn {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        StrColumn {
            data: Vec::new(),
            offsets,
            valid: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, s: Option<&str>) -> Option<()> {
        if let Some(s) = s {
            self.data.extend_from_slice(s.as_bytes());
        }
        self.offsets.push(i32::try_from(self.data.len()).ok()?);
        self.valid.push(s.is_some());
        Some(())
    }
}

/// A number column with a validity flag per row (0.0 where not valid).
#[derive(Debug, Default, PartialEq)]
pub struct NumColumn {
    pub values: Vec<f64>,
    pub valid: Vec<bool>,
}

impl NumColumn {
    fn push(&mut self, v: Option<f64>) {
        self.values.push(v.unwrap_or(0.0));
        self.valid.push(v.is_some());
    }
}

/// The rows of a batch, column by column, as the validator would normalise them.
#[derive(Debug, Default, PartialEq)]
pub struct Events {
    pub event_id: StrColumn,
    pub ts_us: Vec<i64>,
    pub user_id: StrColumn,
    pub item_id: StrColumn,
    pub event_type: StrColumn,
    pub value: NumColumn,
    pub request_id: StrColumn,
    pub propensity: NumColumn,
}

impl Events {
    pub fn len(&self) -> usize {
        self.ts_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts_us.is_empty()
    }
}

/// The columns of `body` if every row is of the simple shape and valid; `None` otherwise.
pub fn parse_simple(body: &[u8], lim: &Limits<'_>) -> Option<Events> {
    let rows: Vec<Map<String, Value>> = serde_json::from_slice(body).ok()?;
    let n = rows.len();
    if n == 0 || n > lim.max_rows {
        return None;
    }
    let mut out = Events {
        event_id: StrColumn::new(n),
        ts_us: Vec::with_capacity(n),
        user_id: StrColumn::new(n),
        item_id: StrColumn::new(n),
        event_type: StrColumn::new(n),
        value: NumColumn::default(),
        request_id: StrColumn::new(n),
        propensity: NumColumn::default(),
    };
    for row in &rows {
        if row.keys().any(|k| !FIELDS.contains(&k.as_str())) {
            return None;
        }
        if !matches!(row.get("context"), None | Some(Value::Null)) {
            return None;
        }
        let event_type = id(row.get("event_type"), true, lim.max_id_chars)?;
        if !lim.types.iter().any(|t| Some(t.as_str()) == event_type) {
            return None;
        }
        let value = number(row.get("value"))?;
        if value.is_none() && event_type == Some("rating") {
            return None;
        }
        let propensity = number(row.get("propensity"))?;
        if propensity.is_some_and(|p| !(0.0 < p && p <= 1.0)) {
            return None;
        }
        out.event_id.push(id(row.get("event_id"), false, lim.max_id_chars)?)?;
        out.ts_us.push(ts(row.get("ts"), lim)?);
        out.user_id.push(id(row.get("user_id"), true, lim.max_id_chars)?)?;
        out.item_id.push(id(row.get("item_id"), true, lim.max_id_chars)?)?;
        out.event_type.push(event_type)?;
        out.value.push(value);
        out.request_id
            .push(id(row.get("request_id"), false, lim.max_id_chars)?)?;
        out.propensity.push(propensity);
    }
    Some(out)
}

/// An identifier: `Some(None)` when absent and optional, `Some(Some(s))` when a string the
/// validator takes as it is, `None` when this path cannot decide.
fn id(v: Option<&Value>, required: bool, max_chars: usize) -> Option<Option<&str>> {
    match v {
        None | Some(Value::Null) => (!required).then_some(None),
        Some(Value::String(s)) => {
            // A first character that is neither whitespace nor a control character means the
            // string is not blank under Python's str.strip() either.
            let first = s.chars().next()?;
            if first.is_whitespace() || first.is_control() || s.chars().count() > max_chars {
                return None;
            }
            Some(Some(s.as_str()))
        }
        Some(_) => None,
    }
}

/// A finite number (`Some(Some(x))`), absent (`Some(None)`), or undecided (`None`).
fn number(v: Option<&Value>) -> Option<Option<f64>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => {
            let f = as_f64(n)?;
            f.is_finite().then_some(Some(f))
        }
        Some(_) => None,
    }
}

fn as_f64(n: &serde_json::Number) -> Option<f64> {
    // Integers convert as Python's float(int) does: to the nearest double.
    if let Some(i) = n.as_i64() {
        Some(i as f64)
    } else if let Some(u) = n.as_u64() {
        Some(u as f64)
    } else {
        n.as_f64()
    }
}

/// Epoch microseconds of a numeric `ts` in the accepted range (seconds below 1e11,
/// milliseconds above, rounded half to even as Python's round() does).
fn ts(v: Option<&Value>, lim: &Limits<'_>) -> Option<i64> {
    let Some(Value::Number(n)) = v else { return None };
    let f = as_f64(n)?;
    if !f.is_finite() || f.abs() >= MAX_EPOCH {
        return None;
    }
    let us = if f.abs() < MS_THRESHOLD { f * 1e6 } else { f * 1e3 }.round_ties_even() as i64;
    (lim.oldest_us..=lim.latest_us).contains(&us).then_some(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> Vec<String> {
        ["impression", "click", "rating"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn lim(types: &[String]) -> Limits<'_> {
        Limits {
            latest_us: 2_000_000_000_000_000,
            oldest_us: 0,
            max_id_chars: 8,
            max_rows: 10,
            types,
        }
    }

    #[test]
    fn a_simple_batch_becomes_columns() {
        let t = types();
        let body = br#"[{"event_id":"e1","ts":1700000000.5,"user_id":"u","item_id":"i","event_type":"click"},
                        {"ts":1700000000123,"user_id":"v","item_id":"j","event_type":"rating","value":4,
                         "request_id":"r","propensity":0.5,"context":null}]"#;
        let ev = parse_simple(body, &lim(&t)).expect("simple");
        assert_eq!(ev.len(), 2);
        assert_eq!(ev.ts_us, vec![1_700_000_000_500_000, 1_700_000_000_123_000]);
        assert_eq!(ev.event_id.data, b"e1");
        assert_eq!(ev.event_id.offsets, vec![0, 2, 2]);
        assert_eq!(ev.event_id.valid, vec![true, false]);
        assert_eq!(ev.user_id.data, b"uv");
        assert_eq!(
            ev.value,
            NumColumn {
                values: vec![0.0, 4.0],
                valid: vec![false, true]
            }
        );
        assert_eq!(ev.propensity.valid, vec![false, true]);
        assert_eq!(ev.request_id.valid, vec![false, true]);
    }

    #[test]
    fn anything_the_validator_might_judge_otherwise_is_left_to_it() {
        let t = types();
        let ok = r#""ts":1700000000,"user_id":"u","item_id":"i""#;
        for row in [
            format!(r#"{{{ok},"event_type":"view"}}"#),                  // unknown type
            format!(r#"{{{ok},"event_type":"rating"}}"#),                // rating without value
            format!(r#"{{{ok},"event_type":"click","extra":1}}"#),       // unknown field
            format!(r#"{{{ok},"event_type":"click","context":{{}}}}"#),  // context: the Python path
            format!(r#"{{{ok},"event_type":"click","propensity":0}}"#),  // propensity out of range
            format!(r#"{{{ok},"event_type":"click","value":"3"}}"#),     // value as text
            format!(r#"{{{ok},"event_type":"click","event_id":7}}"#),    // numeric id
            format!(r#"{{{ok},"event_type":"click","event_id":" e"}}"#), // may be blank
            format!(r#"{{{ok},"event_type":"click","event_id":"123456789"}}"#), // too long
            r#"{"ts":"2024-01-01","user_id":"u","item_id":"i","event_type":"click"}"#.to_string(),
            r#"{"ts":1e14,"user_id":"u","item_id":"i","event_type":"click"}"#.to_string(),
            r#"{"ts":-1,"user_id":"u","item_id":"i","event_type":"click"}"#.to_string(),
            r#"{"ts":1700000000,"user_id":"\ud800","item_id":"i","event_type":"click"}"#.to_string(),
            r#"{"ts":1700000000,"item_id":"i","event_type":"click"}"#.to_string(),
        ] {
            let body = format!(r#"[{{{ok},"event_type":"click"}},{row}]"#);
            assert_eq!(parse_simple(body.as_bytes(), &lim(&t)), None, "{row}");
        }
        for body in ["[]", "{}", "[1]", "not json", "[{}] x"] {
            assert_eq!(parse_simple(body.as_bytes(), &lim(&t)), None, "{body}");
        }
        let eleven = format!("[{}]", vec![format!(r#"{{{ok},"event_type":"click"}}"#); 11].join(","));
        assert_eq!(parse_simple(eleven.as_bytes(), &lim(&t)), None);
    }

    #[test]
    fn ts_rounds_half_to_even_like_python() {
        let t = types();
        // 0.5 us and 1.5 us: Python's round() gives 0 and 2.
        let body = br#"[{"ts":1.0000005,"user_id":"u","item_id":"i","event_type":"click"},
                        {"ts":2.5e-6,"user_id":"u","item_id":"i","event_type":"click"}]"#;
        let ev = parse_simple(body, &lim(&t)).expect("simple");
        assert_eq!(ev.ts_us, vec![(1.0000005f64 * 1e6).round_ties_even() as i64, 2]);
    }
}
