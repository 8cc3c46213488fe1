//! Finding where a field stands in the TOML text, so that problems found after parsing
//! can still say which line to fix.

use toml_edit::{Document, Item, Value};

/// The 1-based line where the field `path` (`roles.viewer.users[0]`) is written.
pub(super) fn line_of(text: &str, path: &str) -> Option<usize> {
    let doc = Document::parse(text.to_owned()).ok()?;
    let mut item: &Item = doc.as_item();
    let mut span = None;
    for segment in path.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let next = item.get(key)?;
        span = next.span().or(span);
        item = next;
        if let Some(index) = index {
            let value: &Value = item.as_value()?.as_array()?.get(index)?;
            let value_span = value.span();
            return value_span.or(span).map(|s| line_at(text, s.start));
        }
    }
    span.map(|s| line_at(text, s.start))
}

/// The dotted table path in force at byte `offset` (the last `[table]` header above
/// it), for errors the toml crate reports without a field name.
pub(super) fn field_at(text: &str, offset: Option<usize>) -> String {
    let Some(offset) = offset else {
        return String::new();
    };
    let before = &text[..offset.min(text.len())];
    let before = &before[..before.rfind('\n').unwrap_or(0)];
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('[') && line.ends_with(']'))
        .map(|line| {
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let key = text[line_start..]
        .lines()
        .next()
        .and_then(|line| line.split_once('='))
        .map(|(key, _)| key.trim().to_owned())
        .filter(|key| !key.is_empty() && !key.contains(['[', '{', '"']));
    match (table.is_empty(), key) {
        (true, Some(key)) => key,
        (false, Some(key)) => format!("{table}.{key}"),
        (_, None) => table,
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
