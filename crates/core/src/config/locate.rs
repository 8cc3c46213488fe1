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
/// it), for errors the toml crate reports without a field name. `message` is the
/// toml crate's: an unknown field that is a table header's own name belongs to the
/// header's parent.
pub(super) fn field_at(text: &str, offset: Option<usize>, message: &str) -> String {
    let Some(offset) = offset else {
        return String::new();
    };
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if let Some(header) = table_header(line) {
        let (parent, name) = header
            .rsplit_once('.')
            .map_or(("", header), |(p, n)| (p.trim(), n.trim()));
        if unknown_field(message) == Some(name) {
            // An unknown `[bogus]` is wrong in the table above it in the tree, not in
            // the one above it in the file.
            return if parent.is_empty() {
                TOP_LEVEL.to_owned()
            } else {
                parent.to_owned()
            };
        }
        return header.to_owned();
    }
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

/// How a problem with the file's top-level tables is labelled.
pub(super) const TOP_LEVEL: &str = "top level";

/// `NAME` in the toml crate's "unknown field `NAME`, expected ...".
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field ")?;
    let quote = rest.chars().next()?;
    let rest = &rest[quote.len_utf8()..];
    rest.split_once(quote).map(|(name, _)| name)
}

/// The dotted name in `[name]` or `[[name]]` (a trailing comment allowed).
fn table_header(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or("").trim();
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(inner);
    Some(inner.trim())
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_table_belongs_to_its_parent_not_to_the_table_above_it() {
        let unknown = |name: &str| format!("unknown field `{name}`, expected one of `a`");
        let text = "[jobs.files]\ntiers = []\n\n[bogus]\nx = 1\n";
        let at = text.find("[bogus]").unwrap();
        assert_eq!(field_at(text, Some(at), &unknown("bogus")), TOP_LEVEL);
        let text = "[daemon]\nsocket = \"/x\"\n[jobs.files.extra]\n";
        let at = text.find("[jobs.files.extra").unwrap();
        assert_eq!(field_at(text, Some(at), &unknown("extra")), "jobs.files");
        // Anything else about a table is about that table.
        let text = "[daemon]\n[jobs.files]\n";
        let at = text.find("[jobs").unwrap();
        assert_eq!(
            field_at(text, Some(at), "missing field `tiers`"),
            "jobs.files"
        );
    }

    #[test]
    fn a_key_belongs_to_the_table_above_it() {
        let text = "[daemon]\n\nsockett = \"/x\"\n";
        let at = text.find("sockett").unwrap();
        assert_eq!(
            field_at(text, Some(at), "unknown field `sockett`"),
            "daemon.sockett"
        );
    }
}
