//! Reading typed values out of the line-carrying YAML tree. Every reader that
//! meets a bad value records a [`ConfigError`] (key path, line, the value as
//! written, what would be accepted) and returns `None`, so the checker goes on
//! and reports every problem in the file.

use super::ConfigError;
use crate::config::UnusedKey;
use crate::suggest;
use saphyr::{MarkedYamlOwned, ScalarOwned, YamlDataOwned};

/// Collects errors and unused keys while the checker walks the tree.
pub(super) struct Ctx<'s> {
    source: &'s str,
    pub errors: Vec<ConfigError>,
    /// Unused keys, each with its line and, when a known key of its section
    /// is spelled like it, that key.
    pub unused: Vec<UnusedKey>,
}

/// One value in the tree, with the key path and line that name it.
#[derive(Clone, Copy)]
pub(super) struct Field<'n> {
    pub node: &'n MarkedYamlOwned,
    pub line: usize,
}

/// A YAML mapping (a section), remembering which keys the checker asked for so
/// that the rest can be listed as unused.
pub(super) struct Map<'n> {
    pub path: String,
    /// Line of the key that introduced this map (where "missing key" errors point).
    pub line: Option<usize>,
    /// False when the value was not a map (already reported): no "missing key"
    /// errors are added for it then.
    pub valid: bool,
    entries: Vec<Entry<'n>>,
    /// Every key the checker asked for, written or not: the keys this
    /// section knows, which an unused key may be a misspelling of.
    asked: Vec<String>,
}

struct Entry<'n> {
    key: String,
    key_line: usize,
    value: &'n MarkedYamlOwned,
    used: bool,
}

/// Follows tags (`!!str 5`) down to the value.
pub(super) fn untag(node: &MarkedYamlOwned) -> &MarkedYamlOwned {
    match &node.data {
        YamlDataOwned::Tagged(_, inner) => untag(inner),
        _ => node,
    }
}

/// The scalar inside a node, if it is one.
pub(super) fn scalar(node: &MarkedYamlOwned) -> Option<&ScalarOwned> {
    match &untag(node).data {
        YamlDataOwned::Value(value) => Some(value),
        _ => None,
    }
}

pub(super) fn is_null(node: &MarkedYamlOwned) -> bool {
    matches!(scalar(node), Some(ScalarOwned::Null))
}

/// Longest text echoed from a config file, in characters.
const SHOWN_CHARS: usize = 80;

/// `text` as echoed in a message: whole if short, else its first
/// [`SHOWN_CHARS`] characters, `…` and its length (a 20 MB value must not
/// make a 20 MB error message).
pub(super) fn clip(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// Joins a key path: `join("search", "n_trials")` is `search.n_trials`.
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

impl<'s> Ctx<'s> {
    pub fn new(source: &'s str) -> Ctx<'s> {
        Ctx { source, errors: Vec::new(), unused: Vec::new() }
    }

    pub fn error(&mut self, key_path: impl Into<String>, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError { key_path: key_path.into(), line, message: message.into() });
    }

    /// The source text of a node, as written (quotes included).
    fn written(&self, node: &MarkedYamlOwned) -> String {
        let (start, end) = (node.span.start.index(), node.span.end.index());
        if end <= start {
            return String::new();
        }
        self.source.chars().skip(start).take(end - start).collect::<String>().trim().to_string()
    }

    /// How a value is shown in messages: strings in quotes, numbers and other
    /// scalars as written, collections by kind; [`clip`]ped when long.
    pub fn show(&self, node: &MarkedYamlOwned) -> String {
        match &untag(node).data {
            YamlDataOwned::Sequence(_) => "a list".to_string(),
            YamlDataOwned::Mapping(_) => "a map".to_string(),
            YamlDataOwned::Value(ScalarOwned::String(text)) => format!("'{}'", clip(text)),
            YamlDataOwned::Value(ScalarOwned::Null) => {
                let written = self.written(node);
                if written.is_empty() { "an empty value".to_string() } else { clip(&written) }
            }
            YamlDataOwned::Value(value) => {
                let written = self.written(node);
                clip(&if written.is_empty() || written.contains('\n') { scalar_text(value) } else { written })
            }
            _ => {
                let written = self.written(node);
                if written.is_empty() { "an unreadable value".to_string() } else { format!("'{}'", clip(&written)) }
            }
        }
    }

    /// "'ten' is a string" style description for type errors.
    fn show_kind(&self, node: &MarkedYamlOwned) -> String {
        let kind = match &untag(node).data {
            YamlDataOwned::Sequence(_) | YamlDataOwned::Mapping(_) => return self.show(node),
            YamlDataOwned::Value(ScalarOwned::String(_)) => "a string",
            YamlDataOwned::Value(ScalarOwned::Integer(_)) => "a whole number",
            YamlDataOwned::Value(ScalarOwned::FloatingPoint(_)) => "a decimal number",
            YamlDataOwned::Value(ScalarOwned::Boolean(_)) => "a boolean",
            YamlDataOwned::Value(ScalarOwned::Null) => return self.show(node),
            _ => "not readable",
        };
        format!("{} ({kind})", self.show(node))
    }

    /// Records "<value> is not <what>; accepted: <accepted>".
    pub fn reject(&mut self, path: &str, field: Field<'_>, what: &str, accepted: &str) {
        let message = format!("{} is not {what}; accepted: {accepted}", self.show_kind(field.node));
        self.error(path, Some(field.line), message);
    }

    /// Opens a section. A missing or empty value is an empty (valid) map, so
    /// defaults apply; any other non-map is reported and checked no further.
    pub fn map<'n>(&mut self, path: &str, line: Option<usize>, field: Option<Field<'n>>) -> Map<'n> {
        let mut map = Map { path: path.to_string(), line, valid: true, entries: Vec::new(), asked: Vec::new() };
        let Some(field) = field else { return map };
        map.line = Some(field.line);
        match &untag(field.node).data {
            YamlDataOwned::Mapping(entries) => {
                for (key, value) in entries {
                    // Clipped: a key is echoed in messages, and no known key is long.
                    let key_text = clip(&match scalar(key) {
                        Some(ScalarOwned::String(text)) => text.clone(),
                        Some(value) => scalar_text(value),
                        None => self.written(key),
                    });
                    map.entries.push(Entry { key: key_text, key_line: key.span.start.line(), value, used: false });
                }
            }
            _ => {
                self.reject(path, field, "a map", "a map of keys (key: value, one per line, or {key: value})");
                map.valid = false;
            }
        }
        map
    }

    /// The items of a list, each with its key path (`path[i]`) and own line.
    pub fn list<'n>(&mut self, path: &str, field: Field<'n>, accepted: &str) -> Option<Vec<(String, Field<'n>)>> {
        match &untag(field.node).data {
            YamlDataOwned::Sequence(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, node)| (format!("{path}[{i}]"), Field { node, line: node.span.start.line() }))
                    .collect(),
            ),
            _ => {
                self.reject(path, field, "a list", accepted);
                None
            }
        }
    }

    /// A whole number ≥ `min`.
    pub fn int(&mut self, path: &str, field: Field<'_>, min: i64) -> Option<i64> {
        let accepted = format!("a whole number ≥ {min}");
        match scalar(field.node) {
            Some(ScalarOwned::Integer(n)) if *n >= min => Some(*n),
            Some(ScalarOwned::Integer(_)) => {
                let message = format!("{} is too small; accepted: {accepted}", self.show(field.node));
                self.error(path, Some(field.line), message);
                None
            }
            _ => {
                self.reject(path, field, "a whole number", &accepted);
                None
            }
        }
    }

    /// A whole number in `lo..=hi`.
    pub fn int_in(&mut self, path: &str, field: Field<'_>, lo: i64, hi: i64) -> Option<i64> {
        let accepted = format!("a whole number from {lo} to {hi}");
        match scalar(field.node) {
            Some(ScalarOwned::Integer(n)) if (lo..=hi).contains(n) => Some(*n),
            Some(ScalarOwned::Integer(_)) => {
                let message = format!("{} is out of range; accepted: {accepted}", self.show(field.node));
                self.error(path, Some(field.line), message);
                None
            }
            _ => {
                self.reject(path, field, "a whole number", &accepted);
                None
            }
        }
    }

    /// A count ≥ `min`, as `usize`.
    pub fn count(&mut self, path: &str, field: Field<'_>, min: usize) -> Option<usize> {
        self.int(path, field, min as i64).and_then(|n| usize::try_from(n).ok())
    }

    /// A number (whole numbers are accepted too); `check` says whether it is in
    /// range, `accepted` describes the range.
    pub fn number(&mut self, path: &str, field: Field<'_>, accepted: &str, check: impl Fn(f64) -> bool) -> Option<f64> {
        let value = match scalar(field.node) {
            Some(ScalarOwned::Integer(n)) => *n as f64,
            Some(ScalarOwned::FloatingPoint(x)) => x.into_inner(),
            _ => {
                self.reject(path, field, "a number", accepted);
                return None;
            }
        };
        if value.is_finite() && check(value) {
            Some(value)
        } else {
            let message = format!("{} is out of range; accepted: {accepted}", self.show(field.node));
            self.error(path, Some(field.line), message);
            None
        }
    }

    /// `true`/`false` (YAML 1.2), plus PyYAML's `yes`/`no`/`on`/`off` so that
    /// files written for SNAC-Pack keep their meaning.
    pub fn boolean(&mut self, path: &str, field: Field<'_>) -> Option<bool> {
        match scalar(field.node) {
            Some(ScalarOwned::Boolean(b)) => Some(*b),
            Some(ScalarOwned::String(text)) if matches!(text.to_lowercase().as_str(), "yes" | "on") => Some(true),
            Some(ScalarOwned::String(text)) if matches!(text.to_lowercase().as_str(), "no" | "off") => Some(false),
            _ => {
                self.reject(path, field, "a boolean", "true, false");
                None
            }
        }
    }

    /// A string (a YAML string scalar; numbers are not strings).
    pub fn string(&mut self, path: &str, field: Field<'_>, what: &str) -> Option<String> {
        match scalar(field.node) {
            Some(ScalarOwned::String(text)) => Some(text.clone()),
            _ => {
                self.reject(path, field, what, &format!("{what} (a string)"));
                None
            }
        }
    }

    /// A name from a fixed set: `parse` returns `None` for names not in it.
    /// Scalars that are not strings (numbers, booleans) are tried by their text.
    pub fn choice<T>(
        &mut self,
        path: &str,
        field: Field<'_>,
        what: &str,
        accepted: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let text = match scalar(field.node) {
            Some(ScalarOwned::String(text)) => Some(text.clone()),
            Some(ScalarOwned::Null) | None => None,
            Some(value) => Some(scalar_text(value)),
        };
        if let Some(found) = text.as_deref().and_then(&parse) {
            return Some(found);
        }
        // The names in `accepted` that `parse` takes are the candidates.
        let hint = match &text {
            Some(text) => {
                let words = accepted.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'));
                suggest::did_you_mean(text, words.filter(|word| !word.is_empty() && parse(word).is_some()))
            }
            None => String::new(),
        };
        let message = format!("{} is not {what}{hint}; accepted: {accepted}", self.show(field.node));
        self.error(path, Some(field.line), message);
        None
    }
}

impl<'n> Map<'n> {
    /// The value under `key`, marked as used. A key written with an empty or
    /// `null` value counts as absent (its default applies).
    pub fn get(&mut self, key: &str) -> Option<Field<'n>> {
        self.get_raw(key).filter(|field| !is_null(field.node))
    }

    /// Like [`Map::get`], but `null` values are returned.
    pub fn get_raw(&mut self, key: &str) -> Option<Field<'n>> {
        if !self.asked.iter().any(|asked| asked == key) {
            self.asked.push(key.to_string());
        }
        let entry = self.entries.iter_mut().find(|entry| entry.key == key)?;
        entry.used = true;
        Some(Field { node: entry.value, line: entry.key_line })
    }

    /// Line of `key` if written (even as `null`), else the line of the map.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.entries.iter().find(|entry| entry.key == key).map(|entry| entry.key_line).or(self.line)
    }

    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Records a required key that is missing (unless the map itself was bad).
    pub fn require(&self, ctx: &mut Ctx<'_>, key: &str, accepted: &str) {
        if self.valid {
            ctx.error(self.path_of(key), self.line_of(key), format!("is required; accepted: {accepted}"));
        }
    }

    /// Keys nobody has asked for yet, with their lines.
    pub fn unasked(&self) -> Vec<(String, usize)> {
        self.entries.iter().filter(|entry| !entry.used).map(|entry| (entry.key.clone(), entry.key_line)).collect()
    }

    /// The known key of this section that `key` is likely a misspelling of
    /// (one asked for but not written).
    pub fn suggestion(&self, key: &str) -> Option<String> {
        let unwritten = self.asked.iter().filter(|asked| !self.entries.iter().any(|entry| entry.key == **asked));
        suggest::closest(key, unwritten.map(String::as_str)).map(str::to_string)
    }

    /// Lists the keys nobody asked for as unused, each with the known key it
    /// is likely a misspelling of.
    pub fn finish(self, ctx: &mut Ctx<'_>) {
        for entry in self.entries.iter().filter(|entry| !entry.used) {
            ctx.unused.push(UnusedKey {
                path: join(&self.path, &entry.key),
                line: entry.key_line,
                detail: None,
                suggestion: self.suggestion(&entry.key),
            });
        }
    }
}

fn scalar_text(value: &ScalarOwned) -> String {
    match value {
        ScalarOwned::Null => "null".to_string(),
        ScalarOwned::Boolean(b) => b.to_string(),
        ScalarOwned::Integer(n) => n.to_string(),
        ScalarOwned::FloatingPoint(x) => x.to_string(),
        ScalarOwned::String(text) => text.clone(),
    }
}
