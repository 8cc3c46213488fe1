//! Markdown to a man page (roff, the `man(7)` macros), for drd.toml(5) from
//! docs/configuration.md, so the page never drifts from the doc.
//!
//! pulldown-cmark parses; this walks its events and writes the few constructs the doc
//! uses, plainly:
//!
//! | markdown | roff |
//! | --- | --- |
//! | `#` title | dropped: the NAME section stands for it; its text opens DESCRIPTION |
//! | `##`, `###` | `.SH`, `.SS` |
//! | paragraph | `.PP` |
//! | `code`, **strong**, *emphasis* | bold, bold, italic |
//! | fenced code | `.nf` indented block |
//! | list | `.IP` items (bullets or numbers), nested with `.RS` |
//! | table | one `.TP` per row: the first cell as the tag, the middle cells as `HEADER: value`, the last as the text (roff tables need tbl, and a wide table wraps badly on a terminal) |
//! | link | its text, then the address unless it points inside the doc |

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// The page's header: what `.TH` and the NAME and SEE ALSO sections say.
pub struct Title<'a> {
    /// The page's name, e.g. `drd.toml`.
    pub name: &'a str,
    /// The manual section, e.g. 5 for file formats.
    pub section: u8,
    /// The one line after the name in NAME.
    pub summary: &'a str,
    /// The program and version the page belongs to.
    pub source: &'a str,
    /// The manual's title, e.g. "File Formats".
    pub manual: &'a str,
    /// Other pages, as `name(section)`.
    pub see_also: &'a [&'a str],
}

/// Renders `markdown` as a whole man page headed by `title`.
pub fn to_man_page(markdown: &str, title: &Title<'_>) -> String {
    let mut out = Roff::default();
    out.macro_line(&format!(
        ".TH \"{}\" {} \"\" \"{}\" \"{}\"",
        title.name.to_uppercase(),
        title.section,
        title.source,
        title.manual
    ));
    out.macro_line(".SH NAME");
    out.text(&format!("{} \\- {}", title.name, title.summary));
    out.macro_line(".SH DESCRIPTION");
    out.render(Parser::new_ext(markdown, Options::ENABLE_TABLES));
    out.macro_line(".SH \"SEE ALSO\"");
    let refs: Vec<String> = title
        .see_also
        .iter()
        .map(|page| match page.split_once('(') {
            Some((name, section)) => format!("\\fB{name}\\fR({section}"),
            None => (*page).to_string(),
        })
        .collect();
    out.text(&refs.join(", "));
    out.finish()
}

/// The roff being written, and where the walk is.
#[derive(Default)]
struct Roff {
    out: String,
    /// Fonts open inside the current line (`B`, `I`); the font to go back to is below.
    fonts: Vec<char>,
    /// List nesting: `None` for bullets, `Some(next number)` for an ordered list.
    lists: Vec<Option<u64>>,
    /// Inside a fenced code block: text is copied line by line, not filled.
    in_code: bool,
    /// Inside the document's `#` title: its text is dropped.
    in_title: bool,
    /// Inside a table: its header cells, and the cells of the row being read.
    table: Option<Table>,
    /// Inside a link to this address (written after its text).
    link: Option<String>,
}

#[derive(Default)]
struct Table {
    head: Vec<String>,
    row: Vec<String>,
    in_head: bool,
    /// The cell being read: inline text goes here, not to the output.
    cell: Option<String>,
}

impl Roff {
    fn render<'a>(&mut self, events: impl Iterator<Item = Event<'a>>) {
        for event in events {
            match event {
                Event::Start(tag) => self.start(tag),
                Event::End(tag) => self.end(tag),
                Event::Text(text) if self.in_code => self.code_text(&text),
                Event::Text(text) => self.inline(&escape(&text)),
                Event::Code(code) => {
                    let code = escape(&code).replace('-', "\\-");
                    self.inline(&format!("\\fB{code}{}", self.font_after()));
                }
                Event::SoftBreak => self.inline("\n"),
                Event::HardBreak => self.macro_line(".br"),
                Event::Rule => self.macro_line(".PP"),
                // The doc holds no HTML, footnotes, math or task lists; were any added,
                // their text is kept and their markup dropped.
                Event::Html(_) | Event::InlineHtml(_) => {}
                Event::FootnoteReference(text)
                | Event::InlineMath(text)
                | Event::DisplayMath(text) => self.inline(&escape(&text)),
                Event::TaskListMarker(done) => self.inline(if done { "[x] " } else { "[ ] " }),
            }
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => match level {
                HeadingLevel::H1 => self.in_title = true,
                HeadingLevel::H2 => self.open_line(".SH \""),
                _ => self.open_line(".SS \""),
            },
            Tag::Paragraph if self.table.is_none() => {
                if !self.lists.is_empty() && !self.at_item_start() {
                    self.macro_line(".IP");
                } else if self.lists.is_empty() {
                    self.macro_line(".PP");
                }
            }
            Tag::CodeBlock(_) => {
                self.macro_line(".PP");
                self.macro_line(".RS 4");
                self.macro_line(".nf");
                self.in_code = true;
            }
            Tag::List(first) => {
                if !self.lists.is_empty() {
                    self.macro_line(".RS");
                }
                self.lists.push(first);
            }
            Tag::Item => {
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("\"{}.\" 4", *n - 1)
                    }
                    _ => "\\(bu 2".to_string(),
                };
                self.macro_line(&format!(".IP {marker}"));
            }
            Tag::Table(_) => self.table = Some(Table::default()),
            Tag::TableHead => {
                if let Some(table) = &mut self.table {
                    table.in_head = true;
                }
            }
            Tag::TableCell => {
                if let Some(table) = &mut self.table {
                    table.cell = Some(String::new());
                }
            }
            Tag::TableRow => {}
            Tag::Emphasis => self.push_font('I'),
            Tag::Strong => self.push_font('B'),
            Tag::Link { dest_url, .. } => {
                self.link = (!dest_url.starts_with('#')).then(|| dest_url.to_string());
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(HeadingLevel::H1) => self.in_title = false,
            TagEnd::Heading(_) => {
                self.out.push('"');
                self.newline();
            }
            TagEnd::Paragraph => self.newline(),
            TagEnd::CodeBlock => {
                self.in_code = false;
                self.macro_line(".fi");
                self.macro_line(".RE");
            }
            TagEnd::List(_) => {
                self.lists.pop();
                if !self.lists.is_empty() {
                    self.macro_line(".RE");
                }
            }
            TagEnd::Item => self.newline(),
            TagEnd::TableCell => {
                if let Some(table) = &mut self.table {
                    let cell = table.cell.take().unwrap_or_default().trim().to_string();
                    if table.in_head {
                        table.head.push(cell);
                    } else {
                        table.row.push(cell);
                    }
                }
            }
            TagEnd::TableHead => {
                if let Some(table) = &mut self.table {
                    table.in_head = false;
                }
            }
            TagEnd::TableRow => {
                let row = self.table.as_mut().map(|t| std::mem::take(&mut t.row));
                if let (Some(row), Some(table)) = (row, self.table.take()) {
                    self.table_row(&table.head, &row);
                    self.table = Some(table);
                }
            }
            TagEnd::Table => {
                self.table = None;
                self.macro_line(".PP");
            }
            TagEnd::Emphasis | TagEnd::Strong => {
                self.fonts.pop();
                let back = self.font_after();
                self.inline(&back);
            }
            TagEnd::Link => {
                if let Some(url) = self.link.take() {
                    self.inline(&format!(" <{}>", escape(&url)));
                }
            }
            _ => {}
        }
    }

    /// A table row as a tagged paragraph: the first cell as the tag, the middle cells
    /// as `HEADER: value` lines, the last cell as the text.
    fn table_row(&mut self, head: &[String], row: &[String]) {
        let Some((first, rest)) = row.split_first() else {
            return;
        };
        self.macro_line(".TP");
        self.text(first);
        // The body on a line of its own even when the tag is short enough to share one.
        self.macro_line(".br");
        let Some((last, middle)) = rest.split_last() else {
            return;
        };
        for (i, cell) in middle.iter().enumerate() {
            if cell.trim().is_empty() {
                continue;
            }
            let header = head.get(i + 1).map_or("", String::as_str);
            self.text(&format!("{header}: {cell}"));
            self.macro_line(".br");
        }
        self.text(last);
    }

    fn code_text(&mut self, text: &str) {
        for line in text.lines() {
            let line = escape(line);
            if line.starts_with('.') || line.starts_with('\'') {
                self.out.push_str("\\&");
            }
            self.out.push_str(&line);
            self.out.push('\n');
        }
    }

    /// Inline text: dropped inside the title; a line must not start with a control
    /// character (`.` or `'`) or spaces (which would break the filled line).
    fn inline(&mut self, text: &str) {
        if self.in_title {
            return;
        }
        if let Some(cell) = self.table.as_mut().and_then(|t| t.cell.as_mut()) {
            cell.push_str(&text.replace('\n', " "));
            return;
        }
        for (i, piece) in text.split('\n').enumerate() {
            if i > 0 {
                self.newline();
            }
            let piece = if self.at_line_start() {
                piece.trim_start()
            } else {
                piece
            };
            if piece.is_empty() {
                continue;
            }
            if self.at_line_start() && (piece.starts_with('.') || piece.starts_with('\'')) {
                self.out.push_str("\\&");
            }
            self.out.push_str(piece);
        }
    }

    /// A whole line of already escaped text.
    fn text(&mut self, text: &str) {
        self.newline();
        self.inline(text);
        self.newline();
    }

    fn macro_line(&mut self, line: &str) {
        self.newline();
        self.out.push_str(line);
        self.out.push('\n');
    }

    /// Starts a line with a macro whose argument follows as inline text.
    fn open_line(&mut self, start: &str) {
        self.newline();
        self.out.push_str(start);
    }

    fn newline(&mut self) {
        if !self.at_line_start() {
            self.out.push('\n');
        }
    }

    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    /// Right after an `.IP` line: the item's first paragraph goes on it.
    fn at_item_start(&self) -> bool {
        self.out
            .trim_end_matches('\n')
            .rsplit('\n')
            .next()
            .is_some_and(|line| line.starts_with(".IP"))
    }

    fn push_font(&mut self, font: char) {
        self.fonts.push(font);
        self.inline(&format!("\\f{font}"));
    }

    /// The font escape that goes back to what is open after the innermost span.
    fn font_after(&self) -> String {
        format!("\\f{}", self.fonts.last().copied().unwrap_or('R'))
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Escapes roff's escape character; the rest of the text is literal in roff.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(markdown: &str) -> String {
        to_man_page(
            markdown,
            &Title {
                name: "x.toml",
                section: 5,
                summary: "a test",
                source: "x 1",
                manual: "File Formats",
                see_also: &["x(1)"],
            },
        )
    }

    #[test]
    fn a_table_row_becomes_a_tagged_paragraph_with_its_defaults() {
        let out = page(
            "# T\n\n## `[daemon]`\n\n| key | default | meaning |\n| --- | --- | --- |\n| `state_dir` | `/var/lib/drd` | the catalog |\n| `ping_url` | | a URL |\n",
        );
        assert!(out.contains(".SH \"\\fB[daemon]\\fR\"\n"), "{out}");
        assert!(
            out.contains(
                ".TP\n\\fBstate_dir\\fR\n.br\ndefault: \\fB/var/lib/drd\\fR\n.br\nthe catalog\n"
            ),
            "{out}"
        );
        assert!(out.contains(".TP\n\\fBping_url\\fR\n.br\na URL\n"), "{out}");
    }

    #[test]
    fn code_blocks_keep_their_lines_and_no_line_starts_with_a_control_character() {
        let out = page("Text\n.starts with a dot\n\n```toml\n[jobs.a]\n.x = \"a\\\\b\"\n```\n");
        assert!(out.contains("\\&.starts with a dot"), "{out}");
        assert!(
            out.contains(".nf\n[jobs.a]\n\\&.x = \"a\\e\\eb\"\n.fi\n"),
            "{out}"
        );
    }

    #[test]
    fn lists_links_and_fonts() {
        let out =
            page("- one **strong** and *it*\n- [a link](https://x.invalid) and [inside](#a)\n");
        assert!(
            out.contains(".IP \\(bu 2\none \\fBstrong\\fR and \\fIit\\fR"),
            "{out}"
        );
        assert!(
            out.contains("a link <https://x.invalid> and inside\n"),
            "{out}"
        );
    }
}
