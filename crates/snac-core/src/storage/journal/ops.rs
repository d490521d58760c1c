//! The lines of an Optuna journal (optuna 4.5, `JournalOperation`): each is a
//! JSON object with an `op_code`, the `worker_id` of the writer and the
//! operation's fields, written by Python's `json.dumps` (so `NaN`,
//! `Infinity` and `-Infinity` appear as bare tokens). Reading turns a line
//! into an [`Op`]; the `*_line` functions write one as Optuna would.

use super::super::optuna_json::replace_non_finite;
use crate::trial::{Direction, Distribution, TrialState};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Optuna's `JournalOperation` codes.
pub const CREATE_STUDY: i64 = 0;
pub const DELETE_STUDY: i64 = 1;
pub const SET_STUDY_USER_ATTR: i64 = 2;
pub const SET_STUDY_SYSTEM_ATTR: i64 = 3;
pub const CREATE_TRIAL: i64 = 4;
pub const SET_TRIAL_PARAM: i64 = 5;
pub const SET_TRIAL_STATE_VALUES: i64 = 6;
pub const SET_TRIAL_INTERMEDIATE_VALUE: i64 = 7;
pub const SET_TRIAL_USER_ATTR: i64 = 8;
pub const SET_TRIAL_SYSTEM_ATTR: i64 = 9;

/// One operation of the journal.
#[derive(Debug)]
pub enum Op {
    CreateStudy {
        name: String,
        directions: Vec<Direction>,
    },
    DeleteStudy {
        study_id: i64,
    },
    SetStudyAttr {
        study_id: i64,
        system: bool,
        key: String,
        value: Value,
    },
    CreateTrial(NewTrial),
    SetParam {
        trial_id: i64,
        name: String,
        internal: f64,
        distribution: Distribution,
        compat: Compat,
    },
    SetStateValues {
        trial_id: i64,
        state: TrialState,
        values: Option<Vec<f64>>,
        datetime_start: Option<DateTime<Utc>>,
        datetime_complete: Option<DateTime<Utc>>,
    },
    SetTrialAttr {
        trial_id: i64,
        system: bool,
        key: String,
        value: Value,
    },
    /// An intermediate value (an epoch's validation accuracy).
    SetIntermediate {
        trial_id: i64,
        step: u64,
        value: f64,
    },
}

/// A `CREATE_TRIAL`, with the fields of a template trial when it has them.
#[derive(Debug)]
pub struct NewTrial {
    pub study_id: i64,
    pub state: TrialState,
    pub values: Option<Vec<f64>>,
    pub params: BTreeMap<String, (Distribution, f64, Compat)>,
    pub user_attrs: BTreeMap<String, Value>,
    pub system_attrs: BTreeMap<String, Value>,
    pub datetime_start: Option<DateTime<Utc>>,
    pub datetime_complete: Option<DateTime<Utc>>,
}

/// What Optuna's `check_distribution_compatibility` compares: the class, the
/// `log` flag, and a categorical's choices (numbers compared as Python does,
/// `1 == 1.0`).
#[derive(Clone, Debug, PartialEq)]
pub struct Compat {
    class: String,
    log: bool,
    choices: Option<Vec<Value>>,
}

impl Compat {
    /// From Optuna's `distribution_json`.
    pub fn of_json(json: &str) -> Result<Compat> {
        let v: Value = serde_json::from_str(json).with_context(|| format!("distribution JSON is not JSON: {json}"))?;
        let (class, attrs) = match (v.get("name").and_then(Value::as_str), v.get("type").and_then(Value::as_str)) {
            (Some(name), _) => (name.to_string(), v.get("attributes").cloned().unwrap_or(Value::Null)),
            (None, Some(kind)) => (kind.to_string(), v.clone()),
            (None, None) => bail!("distribution {json} names no class"),
        };
        let log = matches!(class.as_str(), "LogUniformDistribution" | "IntLogUniformDistribution")
            || attrs.get("log").and_then(Value::as_bool).unwrap_or(false);
        let choices = attrs.get("choices").and_then(Value::as_array).map(|c| c.iter().map(python_eq_form).collect());
        Ok(Compat { class, log, choices })
    }
}

/// A choice in the form in which Python's `==` compares it: every number as a float.
fn python_eq_form(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(v.clone(), Value::from),
        other => other.clone(),
    }
}

/// Stand-ins for Python's non-finite float tokens while the line is parsed.
const NAN: &str = "\u{1}NaN";
const INF: &str = "\u{1}Infinity";
const NEG_INF: &str = "\u{1}-Infinity";

/// Parses JSON as Python's `json.loads` does, non-finite tokens included.
fn parse_python_json(text: &str) -> Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let cleaned = replace_non_finite(text, |token| match token {
                "NaN" => "\"\\u0001NaN\"",
                "Infinity" => "\"\\u0001Infinity\"",
                _ => "\"\\u0001-Infinity\"",
            });
            serde_json::from_str(&cleaned).map_err(|_| first.into())
        }
    }
}

/// A float field: a number or a non-finite token.
fn float(v: &Value) -> Option<f64> {
    match v.as_str() {
        Some(NAN) => Some(f64::NAN),
        Some(INF) => Some(f64::INFINITY),
        Some(NEG_INF) => Some(f64::NEG_INFINITY),
        _ => v.as_f64(),
    }
}

/// An attribute value: non-finite floats read as null (a JSON value cannot
/// hold them; the RDB backends read them so too).
fn attr_value(v: Value) -> Value {
    match v {
        Value::String(s) if [NAN, INF, NEG_INF].contains(&s.as_str()) => Value::Null,
        Value::Array(items) => Value::Array(items.into_iter().map(attr_value).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, attr_value(v))).collect()),
        other => other,
    }
}

/// Reads one line of the journal.
pub fn parse_line(text: &str) -> Result<Op> {
    let v = parse_python_json(text.trim_end())?;
    let obj = v.as_object().context("not a JSON object")?;
    let code = obj.get("op_code").and_then(Value::as_i64).context("no integer op_code")?;
    obj.get("worker_id").context("no worker_id")?;
    let int = |key: &str| obj.get(key).and_then(Value::as_i64).with_context(|| format!("no integer '{key}'"));
    Ok(match code {
        CREATE_STUDY => {
            let name = obj.get("study_name").and_then(Value::as_str).context("no study_name")?.to_string();
            let directions = obj.get("directions").and_then(Value::as_array).context("no directions list")?;
            let directions = directions.iter().map(direction).collect::<Result<_>>()?;
            Op::CreateStudy { name, directions }
        }
        DELETE_STUDY => Op::DeleteStudy { study_id: int("study_id")? },
        SET_STUDY_USER_ATTR | SET_STUDY_SYSTEM_ATTR => {
            let system = code == SET_STUDY_SYSTEM_ATTR;
            let (key, value) = single_attr(obj, system)?;
            Op::SetStudyAttr { study_id: int("study_id")?, system, key, value }
        }
        CREATE_TRIAL => Op::CreateTrial(new_trial(obj, int("study_id")?)?),
        SET_TRIAL_PARAM => {
            let name = obj.get("param_name").and_then(Value::as_str).context("no param_name")?.to_string();
            let internal = obj.get("param_value_internal").and_then(float).context("no param_value_internal")?;
            let json = obj.get("distribution").and_then(Value::as_str).context("no distribution")?;
            let distribution = Distribution::from_optuna_json(json)?;
            Op::SetParam { trial_id: int("trial_id")?, name, internal, distribution, compat: Compat::of_json(json)? }
        }
        SET_TRIAL_STATE_VALUES => Op::SetStateValues {
            trial_id: int("trial_id")?,
            state: state(obj.get("state"))?,
            values: values(obj.get("values"))?,
            datetime_start: time(obj.get("datetime_start"))?,
            datetime_complete: time(obj.get("datetime_complete"))?,
        },
        SET_TRIAL_INTERMEDIATE_VALUE => {
            let step = obj.get("step").and_then(Value::as_u64).context("no step (a whole number ≥ 0)")?;
            let value = obj.get("intermediate_value").and_then(float).context("no intermediate_value")?;
            Op::SetIntermediate { trial_id: int("trial_id")?, step, value }
        }
        SET_TRIAL_USER_ATTR | SET_TRIAL_SYSTEM_ATTR => {
            let system = code == SET_TRIAL_SYSTEM_ATTR;
            let (key, value) = single_attr(obj, system)?;
            Op::SetTrialAttr { trial_id: int("trial_id")?, system, key, value }
        }
        other => bail!("unknown op_code {other} (optuna 4.5 writes 0 to 9)"),
    })
}

fn new_trial(obj: &Map<String, Value>, study_id: i64) -> Result<NewTrial> {
    let attrs = |key: &str| -> Result<BTreeMap<String, Value>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), attr_value(v.clone()))).collect()),
            Some(other) => bail!("'{key}' is not an object: {other}"),
        }
    };
    let dists = obj.get("distributions").and_then(Value::as_object);
    let mut params = BTreeMap::new();
    if let Some(given) = obj.get("params").and_then(Value::as_object) {
        for (name, internal) in given {
            let json = dists.and_then(|d| d.get(name)).and_then(Value::as_str);
            let json = json.with_context(|| format!("parameter '{name}' has no distribution"))?;
            let internal = float(internal).with_context(|| format!("parameter '{name}' is not a number"))?;
            params.insert(name.clone(), (Distribution::from_optuna_json(json)?, internal, Compat::of_json(json)?));
        }
    }
    let values = match values(obj.get("values"))? {
        Some(values) => Some(values),
        None => obj
            .get("value")
            .filter(|v| !v.is_null())
            .map(|v| float(v).context("'value' is not a number"))
            .transpose()?
            .map(|v| vec![v]),
    };
    Ok(NewTrial {
        study_id,
        state: obj.get("state").map_or(Ok(TrialState::Running), |s| state(Some(s)))?,
        values,
        params,
        user_attrs: attrs("user_attrs")?,
        system_attrs: attrs("system_attrs")?,
        datetime_start: time(obj.get("datetime_start"))?,
        datetime_complete: time(obj.get("datetime_complete"))?,
    })
}

fn single_attr(obj: &Map<String, Value>, system: bool) -> Result<(String, Value)> {
    let field = if system { "system_attr" } else { "user_attr" };
    let map = obj.get(field).and_then(Value::as_object).with_context(|| format!("no '{field}' object"))?;
    if map.len() != 1 {
        bail!("'{field}' holds {} attributes; Optuna writes one per line", map.len());
    }
    let (key, value) = map.iter().next().expect("one entry");
    Ok((key.clone(), attr_value(value.clone())))
}

/// Optuna's `StudyDirection` codes: 1 minimize, 2 maximize.
fn direction(v: &Value) -> Result<Direction> {
    match v.as_i64() {
        Some(1) => Ok(Direction::Minimize),
        Some(2) => Ok(Direction::Maximize),
        _ => bail!("study direction {v} is not 1 (MINIMIZE) or 2 (MAXIMIZE)"),
    }
}

fn direction_code(d: Direction) -> i64 {
    match d {
        Direction::Minimize => 1,
        Direction::Maximize => 2,
    }
}

/// Optuna's `TrialState` codes.
fn state(v: Option<&Value>) -> Result<TrialState> {
    let v = v.context("no state")?;
    Ok(match v.as_i64() {
        Some(0) => TrialState::Running,
        Some(1) => TrialState::Complete,
        Some(2) => TrialState::Pruned,
        Some(3) => TrialState::Fail,
        Some(4) => TrialState::Waiting,
        _ => bail!("trial state {v} is not one of Optuna's 0 to 4"),
    })
}

fn state_code(s: TrialState) -> i64 {
    match s {
        TrialState::Running => 0,
        TrialState::Complete => 1,
        TrialState::Pruned => 2,
        TrialState::Fail => 3,
        TrialState::Waiting => 4,
    }
}

fn values(v: Option<&Value>) -> Result<Option<Vec<f64>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(
            items
                .iter()
                .map(|x| float(x).with_context(|| format!("value {x} is not a number")))
                .collect::<Result<_>>()?,
        )),
        Some(other) => bail!("'values' is not a list: {other}"),
    }
}

/// Python's `datetime.fromisoformat` of what Optuna writes: a naive local
/// time (`isoformat(timespec="microseconds")`), or one with a UTC offset.
fn time(v: Option<&Value>) -> Result<Option<DateTime<Utc>>> {
    let Some(text) = v.and_then(Value::as_str) else {
        return match v {
            None | Some(Value::Null) => Ok(None),
            Some(other) => bail!("datetime {other} is not a string"),
        };
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.to_utc()));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, fmt) {
            let local = Local.from_local_datetime(&naive).earliest();
            return Ok(Some(local.map_or_else(|| naive.and_utc(), |t| t.to_utc())));
        }
    }
    bail!("unreadable datetime '{text}' (expected YYYY-MM-DDTHH:MM:SS.ffffff)")
}

/// A time as Optuna writes it: naive local time to the microsecond.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.with_timezone(&Local).naive_local().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// A float as Python's `json.dumps` writes it.
fn py_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "Infinity".into()
    } else if v == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        Value::from(v).to_string()
    }
}

/// One line (without its newline): `op_code` and `worker_id` first, as Optuna writes them.
fn line(code: i64, worker: &str, fields: Value) -> String {
    let mut text = json!({"op_code": code, "worker_id": worker}).to_string();
    let rest = fields.to_string();
    if rest.len() > 2 {
        text.pop();
        text.push(',');
        text.push_str(&rest[1..]);
    }
    text
}

pub fn create_study_line(worker: &str, name: &str, directions: &[Direction]) -> String {
    let codes: Vec<i64> = directions.iter().map(|d| direction_code(*d)).collect();
    line(CREATE_STUDY, worker, json!({"study_name": name, "directions": codes}))
}

pub fn delete_study_line(worker: &str, study_id: i64) -> String {
    line(DELETE_STUDY, worker, json!({"study_id": study_id}))
}

pub fn study_attr_line(worker: &str, study_id: i64, system: bool, key: &str, value: &Value) -> String {
    let (code, field) =
        if system { (SET_STUDY_SYSTEM_ATTR, "system_attr") } else { (SET_STUDY_USER_ATTR, "user_attr") };
    line(code, worker, json!({"study_id": study_id, field: {key: value}}))
}

pub fn create_trial_line(worker: &str, study_id: i64, start: &DateTime<Utc>) -> String {
    line(CREATE_TRIAL, worker, json!({"study_id": study_id, "datetime_start": format_time(start)}))
}

pub fn param_line(worker: &str, trial_id: i64, name: &str, internal: f64, d: &Distribution) -> String {
    let fields = json!({
        "trial_id": trial_id,
        "param_name": name,
        "param_value_internal": internal,
        "distribution": d.to_optuna_json(),
    });
    line(SET_TRIAL_PARAM, worker, fields)
}

pub fn state_values_line(
    worker: &str,
    trial_id: i64,
    state: TrialState,
    values: Option<&[f64]>,
    complete: &DateTime<Utc>,
) -> String {
    debug_assert!(state.is_finished());
    let head = line(SET_TRIAL_STATE_VALUES, worker, json!({"trial_id": trial_id, "state": state_code(state)}));
    let values = match values {
        Some(values) => format!("[{}]", values.iter().map(|v| py_float(*v)).collect::<Vec<_>>().join(",")),
        None => "null".into(),
    };
    let complete = Value::from(format_time(complete));
    format!("{},\"values\":{values},\"datetime_complete\":{complete}}}", &head[..head.len() - 1])
}

pub fn intermediate_line(worker: &str, trial_id: i64, step: u64, value: f64) -> String {
    let head = line(SET_TRIAL_INTERMEDIATE_VALUE, worker, json!({"trial_id": trial_id, "step": step}));
    format!("{},\"intermediate_value\":{}}}", &head[..head.len() - 1], py_float(value))
}

pub fn trial_attr_line(worker: &str, trial_id: i64, system: bool, key: &str, value: &Value) -> String {
    let (code, field) =
        if system { (SET_TRIAL_SYSTEM_ATTR, "system_attr") } else { (SET_TRIAL_USER_ATTR, "user_attr") };
    line(code, worker, json!({"trial_id": trial_id, field: {key: value}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_optuna_writes() {
        let w = r#""worker_id":"c98a4d67-ca0a-49fb-8f52-0fc67acc04f0-139628307475328""#;
        let op = parse_line(&format!(r#"{{"op_code":0,{w},"study_name":"x","directions":[2,1]}}"#)).unwrap();
        assert!(matches!(op, Op::CreateStudy { ref name, ref directions }
            if name == "x" && directions == &[Direction::Maximize, Direction::Minimize]));
        let op = parse_line(&format!(
            r#"{{"op_code":6,{w},"trial_id":0,"state":1,"values":[Infinity,-Infinity,NaN,1.0],"datetime_complete":"2026-12-03T11:12:43.155469"}}"#
        ))
        .unwrap();
        let Op::SetStateValues { state, values: Some(v), datetime_complete: Some(t), .. } = op else {
            panic!("{op:?}")
        };
        assert_eq!(state, TrialState::Complete);
        assert_eq!((v[0], v[1], v[2].is_nan(), v[3]), (f64::INFINITY, f64::NEG_INFINITY, true, 1.0));
        assert_eq!(format_time(&t), "2026-12-03T11:12:43.155469");
        let op = parse_line(&format!(
            r#"{{"op_code":5,{w},"trial_id":0,"param_name":"a","param_value_internal":1,"distribution":"{{\"name\": \"CategoricalDistribution\", \"attributes\": {{\"choices\": [\"relu\", null, 3]}}}}"}}"#
        ))
        .unwrap();
        let Op::SetParam { internal, distribution, .. } = op else { panic!() };
        assert_eq!((internal, distribution.external(internal)), (1.0, Value::Null));
        // An enqueued trial: WAITING, no start, a template's fields.
        let op = parse_line(&format!(
            r#"{{"op_code":4,{w},"study_id":0,"datetime_start":null,"state":4,"value":null,"values":null,"distributions":{{}},"params":{{}},"user_attrs":{{}},"system_attrs":{{"fixed_params":{{"n":2}}}},"intermediate_values":{{}}}}"#
        ))
        .unwrap();
        let Op::CreateTrial(t) = op else { panic!() };
        assert_eq!((t.state, t.datetime_start, t.values), (TrialState::Waiting, None, None));
        assert_eq!(t.system_attrs["fixed_params"], json!({"n": 2}));
        let op = parse_line(&format!(r#"{{"op_code":7,{w},"trial_id":3,"step":2,"intermediate_value":NaN}}"#));
        assert!(matches!(op, Ok(Op::SetIntermediate { trial_id: 3, step: 2, value }) if value.is_nan()));
        let written = intermediate_line("w", 3, 2, 0.25);
        assert_eq!(written, r#"{"op_code":7,"worker_id":"w","step":2,"trial_id":3,"intermediate_value":0.25}"#);
    }

    #[test]
    fn writes_what_optuna_reads() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000006Z").unwrap().to_utc();
        let l = state_values_line("w", 3, TrialState::Complete, Some(&[f64::INFINITY, 0.5]), &t);
        assert!(l.starts_with(r#"{"op_code":6,"worker_id":"w","#) && l.contains(r#""values":[Infinity,0.5]"#), "{l}");
        let Op::SetStateValues { values, datetime_complete, .. } = parse_line(&l).unwrap() else { panic!() };
        assert_eq!((values, datetime_complete), (Some(vec![f64::INFINITY, 0.5]), Some(t)));
        let l = create_study_line("w", "s", &[Direction::Minimize, Direction::Maximize]);
        assert_eq!(l, r#"{"op_code":0,"worker_id":"w","directions":[1,2],"study_name":"s"}"#);
        let l = trial_attr_line("w", 1, true, "k", &json!({"a": [1, null]}));
        assert_eq!(l, r#"{"op_code":9,"worker_id":"w","system_attr":{"k":{"a":[1,null]}},"trial_id":1}"#);
    }

    #[test]
    fn refuses_lines_optuna_would_not_read() {
        for (bad, says) in [
            ("[]", "not a JSON object"),
            (r#"{"op_code":12,"worker_id":"w"}"#, "unknown op_code 12"),
            (r#"{"op_code":0,"study_name":"x","directions":[1]}"#, "worker_id"),
            (r#"{"op_code":0,"worker_id":"w","study_name":"x","directions":[0]}"#, "direction 0"),
            (r#"{"op_code":8,"worker_id":"w","trial_id":0,"user_attr":{"a":1,"b":2}}"#, "holds 2 attributes"),
            (r#"{"op_code":6,"worker_id":"w","trial_id":0,"state":9,"values":null}"#, "trial state 9"),
        ] {
            let e = format!("{:#}", parse_line(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn compatibility_is_optunas() {
        let c = |j: &str| Compat::of_json(j).unwrap();
        let int = c(r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 1, "high": 8}}"#);
        let int_wide =
            c(r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 2, "low": 0, "high": 80}}"#);
        let int_log = c(r#"{"name": "IntDistribution", "attributes": {"log": true, "step": 1, "low": 1, "high": 8}}"#);
        let cat = c(r#"{"name": "CategoricalDistribution", "attributes": {"choices": [1, "a"]}}"#);
        let cat_float = c(r#"{"name": "CategoricalDistribution", "attributes": {"choices": [1.0, "a"]}}"#);
        let cat_other = c(r#"{"name": "CategoricalDistribution", "attributes": {"choices": [2, "a"]}}"#);
        assert_eq!(int, int_wide, "ranges may change");
        assert_ne!(int, int_log);
        assert_eq!(cat, cat_float);
        assert_ne!(cat, cat_other);
        assert_ne!(int, cat);
    }
}
