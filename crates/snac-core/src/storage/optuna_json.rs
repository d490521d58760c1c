//! Optuna's JSON formats at the storage edge: a parameter's `distribution_json`
//! and the `value_json` of attributes, as Python's `json.dumps` writes them.

use crate::trial::Distribution;
use anyhow::{Context, Result, bail};
use serde_json::Value;

impl Distribution {
    /// The distribution as Optuna's `distribution_to_json` writes it, e.g.
    /// `{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 2, "high": 5}}`
    /// (same key order and separators as Python's `json.dumps`).
    pub fn to_optuna_json(&self) -> String {
        match self {
            Distribution::Categorical { choices } => {
                let choices: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
                format!(
                    r#"{{"name": "CategoricalDistribution", "attributes": {{"choices": [{}]}}}}"#,
                    choices.join(", ")
                )
            }
            Distribution::Int { low, high, step } => format!(
                r#"{{"name": "IntDistribution", "attributes": {{"log": false, "step": {step}, "low": {low}, "high": {high}}}}}"#
            ),
            Distribution::Float { low, high, log } => format!(
                r#"{{"name": "FloatDistribution", "attributes": {{"step": null, "low": {}, "high": {}, "log": {log}}}}}"#,
                Value::from(*low),
                Value::from(*high)
            ),
        }
    }

    /// Reads Optuna's `distribution_json`: the current classes
    /// (`CategoricalDistribution`, `IntDistribution`, `FloatDistribution`), the
    /// pre-3.0 ones (`UniformDistribution`, `LogUniformDistribution`,
    /// `DiscreteUniformDistribution`, `IntUniformDistribution`,
    /// `IntLogUniformDistribution`) and the abbreviated `{"type": ...}` form.
    ///
    /// Our [`Distribution`] has no float step and no log integers, so those two
    /// features are dropped: a stepped float reads as a continuous one and a
    /// log integer as a uniform one. Both are supersets of the original, so
    /// every stored value stays contained.
    pub fn from_optuna_json(json: &str) -> Result<Distribution> {
        let v = parse_json_lenient(json).with_context(|| format!("distribution JSON is not JSON: {json}"))?;
        distribution_from_value(&v).with_context(|| format!("unreadable Optuna distribution {json}"))
    }
}

fn distribution_from_value(v: &Value) -> Result<Distribution> {
    let obj = v.as_object().context("expected a JSON object")?;
    if let Some(name) = obj.get("name") {
        let name = name.as_str().context("'name' is not a string")?;
        let attrs = obj.get("attributes").and_then(Value::as_object).context("no 'attributes' object")?;
        let get = |k: &str| attrs.get(k).filter(|v| !v.is_null());
        match name {
            "CategoricalDistribution" => categorical(attrs.get("choices")),
            "IntDistribution" | "IntUniformDistribution" | "IntLogUniformDistribution" => {
                int(get("low"), get("high"), get("step"))
            }
            "FloatDistribution" => float(get("low"), get("high"), get("log").and_then(Value::as_bool).unwrap_or(false)),
            "UniformDistribution" | "DiscreteUniformDistribution" => float(get("low"), get("high"), false),
            "LogUniformDistribution" => float(get("low"), get("high"), true),
            other => bail!("unknown distribution class '{other}'"),
        }
    } else {
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
        match obj.get("type").and_then(Value::as_str) {
            Some("categorical") => categorical(obj.get("choices")),
            Some("int") => int(get("low"), get("high"), get("step")),
            Some("float") => float(get("low"), get("high"), get("log").and_then(Value::as_bool).unwrap_or(false)),
            Some(other) => bail!("unknown distribution type '{other}'"),
            None => bail!("neither 'name' nor 'type' given"),
        }
    }
}

fn categorical(choices: Option<&Value>) -> Result<Distribution> {
    let choices = choices.and_then(Value::as_array).context("'choices' is not a list")?;
    if choices.is_empty() {
        bail!("a categorical distribution needs at least one choice");
    }
    Ok(Distribution::Categorical { choices: choices.clone() })
}

fn as_int(v: Option<&Value>, what: &str) -> Result<i64> {
    let v = v.with_context(|| format!("no '{what}'"))?;
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => bail!("'{what}' is not an integer: {v}"),
    }
}

fn as_float(v: Option<&Value>, what: &str) -> Result<f64> {
    v.and_then(Value::as_f64).with_context(|| format!("'{what}' is not a number"))
}

fn int(low: Option<&Value>, high: Option<&Value>, step: Option<&Value>) -> Result<Distribution> {
    let low = as_int(low, "low")?;
    let high = as_int(high, "high")?;
    let step = if step.is_some() { as_int(step, "step")? } else { 1 };
    if step <= 0 || high < low {
        bail!("invalid integer range low={low} high={high} step={step}");
    }
    Ok(Distribution::Int { low, high, step })
}

fn float(low: Option<&Value>, high: Option<&Value>, log: bool) -> Result<Distribution> {
    let low = as_float(low, "low")?;
    let high = as_float(high, "high")?;
    if high < low || (log && low <= 0.0) {
        bail!("invalid float range low={low} high={high} log={log}");
    }
    Ok(Distribution::Float { low, high, log })
}

/// Parses JSON as Python's `json.loads` does, which also accepts the bare
/// tokens `NaN`, `Infinity` and `-Infinity` that `json.dumps` writes for
/// non-finite floats. `serde_json::Value` cannot hold them, so they read as
/// `null`.
pub fn parse_json_lenient(text: &str) -> Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let cleaned = replace_non_finite(text, |_| "null");
            if cleaned == text {
                return Err(first.into());
            }
            serde_json::from_str(&cleaned).map_err(|_| first.into())
        }
    }
}

/// Replaces the tokens `NaN`, `Infinity` and `-Infinity` outside strings
/// with what `with` makes of each (JSON text).
pub(super) fn replace_non_finite(text: &str, with: fn(&str) -> &'static str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str(with(t));
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_optunas_format() {
        let c = Distribution::Categorical { choices: vec![json!(8), json!("relu"), Value::Null] };
        assert_eq!(
            c.to_optuna_json(),
            r#"{"name": "CategoricalDistribution", "attributes": {"choices": [8, "relu", null]}}"#
        );
        let i = Distribution::Int { low: 2, high: 5, step: 1 };
        assert_eq!(
            i.to_optuna_json(),
            r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 2, "high": 5}}"#
        );
        let f = Distribution::Float { low: 0.0, high: 1.0, log: false };
        assert_eq!(
            f.to_optuna_json(),
            r#"{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.0, "high": 1.0, "log": false}}"#
        );
    }

    #[test]
    fn round_trips() {
        for d in [
            Distribution::Categorical { choices: vec![json!(null), json!("a \"quoted\" ü"), json!(1.5), json!(true)] },
            Distribution::Int { low: -3, high: 17, step: 4 },
            Distribution::Float { low: 1e-5, high: 0.1, log: true },
            Distribution::Float { low: -2.5, high: 3.0, log: false },
        ] {
            assert_eq!(Distribution::from_optuna_json(&d.to_optuna_json()).unwrap(), d);
        }
    }

    #[test]
    fn reads_older_and_abbreviated_forms() {
        let cases = [
            (
                r#"{"name": "UniformDistribution", "attributes": {"low": 0.0, "high": 2.0}}"#,
                Distribution::Float { low: 0.0, high: 2.0, log: false },
            ),
            (
                r#"{"name": "LogUniformDistribution", "attributes": {"low": 0.001, "high": 1.0}}"#,
                Distribution::Float { low: 0.001, high: 1.0, log: true },
            ),
            (
                r#"{"name": "DiscreteUniformDistribution", "attributes": {"low": 0.0, "high": 1.0, "q": 0.25}}"#,
                Distribution::Float { low: 0.0, high: 1.0, log: false },
            ),
            (
                r#"{"name": "IntUniformDistribution", "attributes": {"low": 1, "high": 9, "step": 2}}"#,
                Distribution::Int { low: 1, high: 9, step: 2 },
            ),
            (
                r#"{"name": "IntLogUniformDistribution", "attributes": {"low": 1, "high": 64, "step": 1}}"#,
                Distribution::Int { low: 1, high: 64, step: 1 },
            ),
            (
                r#"{"name": "FloatDistribution", "attributes": {"step": 0.5, "low": 0.0, "high": 2.0, "log": false}}"#,
                Distribution::Float { low: 0.0, high: 2.0, log: false },
            ),
            (r#"{"type": "int", "low": 0, "high": 3}"#, Distribution::Int { low: 0, high: 3, step: 1 }),
            (
                r#"{"type": "float", "low": 0.1, "high": 3, "log": true}"#,
                Distribution::Float { low: 0.1, high: 3.0, log: true },
            ),
            (
                r#"{"type": "categorical", "choices": ["x", 2]}"#,
                Distribution::Categorical { choices: vec![json!("x"), json!(2)] },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Distribution::from_optuna_json(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_nonsense_with_the_text() {
        for bad in [
            "not json",
            r#"{"name": "BetaDistribution", "attributes": {}}"#,
            r#"{"name": "IntDistribution", "attributes": {"low": 5, "high": 1}}"#,
            r#"{"name": "CategoricalDistribution", "attributes": {"choices": []}}"#,
        ] {
            let err = format!("{:#}", Distribution::from_optuna_json(bad).unwrap_err());
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn lenient_json_reads_pythons_non_finite_floats() {
        assert_eq!(parse_json_lenient("[NaN, -Infinity, \"NaN\", 1]").unwrap(), json!([null, null, "NaN", 1]));
        assert_eq!(parse_json_lenient(r#"{"a\"NaN": Infinity}"#).unwrap(), json!({"a\"NaN": null}));
        assert!(parse_json_lenient("[Nope]").is_err());
    }
}
