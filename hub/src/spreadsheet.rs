//! Every CSV file the hub writes goes through [`Writer`], and every one it reads through
//! [`read_rows`]: the one place that knows what spreadsheets do with text.
//!
//! **Writing: no cell is ever a formula.** District staff open the exported sheets in
//! Excel or WPS, which take a cell that begins with `=`, `+`, `-` or `@` for a formula (and
//! some strip leading whitespace or control characters first): a name such as
//! `=HYPERLINK("http://…")` or `=cmd|' /c calc'!A1` would run on the reader's machine.
//! [`neutralise`] puts an apostrophe in front of such a cell — the spreadsheets' own "this
//! is text" mark (OWASP "CSV injection"; ASVS 5.0 1.2.10). It applies to **every** cell,
//! ids, phone numbers and numbers included: Excel also reads `+8613800000000` as a
//! number, shows `8.6138E+12` and saves it back without the `+`, and a negative priority
//! `-5` is harmless but not worth a rule of its own. The apostrophe is only added where
//! needed, so ordinary cells are written as they are.
//!
//! **Reading: the importer removes exactly that apostrophe** ([`restore`]), so an export
//! imports back to the same data. The two are inverses: a cell is *risky* if, after any
//! leading apostrophes, it begins with a formula character, whitespace or a control
//! character; the writer prefixes one apostrophe to every risky cell and the reader
//! removes one from every risky cell that begins with one. A typed `'abc` (an apostrophe
//! before something harmless) stays as it is. A sheet saved by Excel after editing gives
//! the same data whether Excel kept the apostrophe (it is removed) or used it as its
//! text mark and dropped it (the bare `=…` is taken as text: the hub never evaluates it).
//!
//! **Reading is strict about the text itself** ([`read_rows`]), before the `csv` crate
//! (which is lenient by design) sees it: control characters other than TAB and line
//! breaks, a carriage return that is not part of a CR LF line break, a quoted cell that
//! is never closed (the `csv` crate silently takes the rest of the file into the cell)
//! and text after a closing quote are refused, each as `file:line: reason` naming the
//! column, never quoting the cell (it may be a name or an address).
//!
//! A future XLSX writer must write every value as a string cell (never a formula
//! element) and still pass it through [`neutralise`]: people copy cells between sheets
//! and save them as CSV again.

// The one module that may use the csv crate's readers and writers (clippy.toml refuses
// them everywhere else, so that no CSV goes around this module).
#![allow(clippy::disallowed_types)]

use std::borrow::Cow;
use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// First characters that make a spreadsheet read a cell as a formula: the ASCII four
/// (Excel, WPS, LibreOffice, Google Sheets) and their full-width forms. Whether WPS or
/// Excel with a Chinese input method evaluates `＝1+1` from a CSV file was not verified
/// here; a name or address never begins with one, so guarding them costs nothing.
const FORMULA_STARTS: [char; 8] = ['=', '+', '-', '@', '＝', '＋', '－', '＠'];

/// Would a spreadsheet read `cell` as a formula, or as one once it strips leading
/// whitespace or control characters (TAB and CR are OWASP's examples)? Leading
/// apostrophes are skipped, so that a risky cell with an apostrophe in front is still
/// risky: that is what makes [`restore`] the exact inverse of [`neutralise`].
fn risky(cell: &str) -> bool {
    cell.trim_start_matches('\'')
        .chars()
        .next()
        .is_some_and(|c| FORMULA_STARTS.contains(&c) || c.is_whitespace() || c.is_control())
}

/// The cell as it is written: with an apostrophe in front if it is risky.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if risky(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// The cell as it was before [`neutralise`]: without the apostrophe it added.
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if risky(rest) => rest,
        _ => cell,
    }
}

/// A CSV writer whose every cell goes through [`neutralise`]. Use it for any CSV the
/// hub writes (exports, reports, credentials printed as CSV).
pub struct Writer<W: io::Write> {
    inner: csv::Writer<W>,
    /// Whether a header row has been written (by the first [`Writer::serialize`]).
    wrote_header: bool,
    /// Splits the rows [`Writer::serialize`] has just serialised back into cells. One
    /// for the whole file: building a `csv` reader per row (its parser tables) had made
    /// writing 10,000 rows take 2.1-3.0 s (debug build; the plain `csv::Writer` takes
    /// 4-16 ms); with one, 57-126 ms.
    splitter: csv_core::Reader,
    /// The splitter's output: the cells' bytes, and where each cell ends.
    cells: Vec<u8>,
    ends: Vec<usize>,
}

impl<W: io::Write> Writer<W> {
    pub fn from_writer(w: W) -> Self {
        Self::new(csv::Writer::from_writer(w))
    }

    fn new(inner: csv::Writer<W>) -> Self {
        let mut splitter = csv_core::Reader::new();
        // The parser drops a byte order mark at the start of its first input: give it a
        // blank line (which it skips) first, so that a first cell beginning with U+FEFF
        // keeps it.
        splitter.read_record(b"\n", &mut [0; 1], &mut [0; 1]);
        Self {
            inner,
            wrote_header: false,
            splitter,
            cells: vec![0; 256],
            ends: vec![0; 16],
        }
    }

    /// Write one row (a struct writes its field names as a header before its first
    /// row, like `csv::Writer::serialize`).
    ///
    /// The `csv` crate serialises the row into a scratch buffer, which is split back
    /// into cells, so that every cell, whatever type it came from, is neutralised here:
    /// a future report cannot forget it.
    pub fn serialize<T: Serialize>(&mut self, row: &T) -> csv::Result<()> {
        let mut scratch = csv::WriterBuilder::new()
            .buffer_capacity(512)
            .has_headers(!self.wrote_header)
            .from_writer(Vec::new());
        scratch.serialize(row)?;
        let bytes = scratch.into_inner().map_err(|e| e.into_error())?;
        self.wrote_header = true;
        let mut input = bytes.as_slice();
        let (mut nout, mut nend) = (0, 0);
        loop {
            let (res, nin, out, end) =
                self.splitter
                    .read_record(input, &mut self.cells[nout..], &mut self.ends[nend..]);
            input = &input[nin..];
            nout += out;
            nend += end;
            match res {
                csv_core::ReadRecordResult::OutputFull => {
                    self.cells.resize(self.cells.len() * 2, 0)
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    self.ends.resize(self.ends.len() * 2, 0)
                }
                csv_core::ReadRecordResult::Record => {
                    let record = csv::ByteRecord::from(
                        (0..nend)
                            .map(|i| {
                                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                                &self.cells[start..self.ends[i]]
                            })
                            .collect::<Vec<_>>(),
                    );
                    let cells = csv::StringRecord::from_byte_record(record)
                        .map_err(|e| csv::Error::from(io::Error::other(e.to_string())))?;
                    self.write_record(&cells)?;
                    (nout, nend) = (0, 0);
                }
                // The scratch holds whole lines (the csv writer ends every record with a
                // line end): once it is read, the row is done.
                csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => {
                    return Ok(())
                }
            }
        }
    }

    /// Write one row of cells.
    pub fn write_record<I, T>(&mut self, cells: I) -> csv::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.inner.write_record(
            cells
                .into_iter()
                .map(|c| neutralise(c.as_ref()).into_owned()),
        )
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// The underlying writer, flushed.
    pub fn into_inner(self) -> csv::Result<W> {
        self.inner.into_inner().map_err(|e| e.into_error().into())
    }
}

impl Writer<std::fs::File> {
    pub fn from_path(path: impl AsRef<std::path::Path>) -> csv::Result<Self> {
        Ok(Self::new(csv::Writer::from_path(path)?))
    }
}

/// Why a file's text was refused before its rows were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A control character (Unicode category Cc) other than TAB, LF and the CR of CR LF.
    ControlCharacter(char),
    /// A CR not followed by LF (old Mac line ends, or pasted text).
    LoneCarriageReturn,
    /// A quoted cell that is never closed.
    UnterminatedQuote,
    /// Text after the closing quote of a cell (`"Li"Wang`).
    TextAfterQuote,
}

impl Malformed {
    /// The metric label and log code.
    pub fn code(&self) -> &'static str {
        match self {
            Malformed::ControlCharacter(_) => "control_character",
            Malformed::LoneCarriageReturn => "lone_carriage_return",
            Malformed::UnterminatedQuote => "unterminated_quote",
            Malformed::TextAfterQuote => "text_after_quote",
        }
    }
}

/// One problem in a file's text: where, and what (never the cell's content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The row as a spreadsheet numbers it (the header is 1), as the `csv` crate counts
    /// records: blank lines are skipped, a cell with line breaks is one row.
    pub line: u64,
    /// The 0-based column, if the problem is inside a cell.
    pub column: Option<usize>,
    pub what: Malformed,
}

/// Check a file's text for what [`read_rows`] refuses, in one pass over the bytes.
///
/// The `csv` crate accepts an unterminated quote at the end of the file (the quoted cell
/// takes everything after it) and offers no way to ask whether that happened, so this
/// follows its state machine for our dialect (`,`, `"` doubled inside quotes, CR, LF or
/// CR LF line ends, blank lines skipped, a UTF-8 byte order mark skipped) to know which
/// row and cell each byte is in. A test checks that it counts rows as the crate does.
pub fn scan(bytes: &[u8]) -> Vec<Problem> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        RecordStart,
        FieldStart,
        Unquoted,
        Quoted,
        /// A quote inside a quoted cell: the closing one, or the first of a doubled pair.
        QuoteInQuoted,
        /// Spaces or TABs after a closing quote, before `,` or the line end (tolerated).
        AfterQuote,
    }
    use State::*;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    // C1 controls are looked for only in UTF-8 text: in a sheet saved as GBK the same
    // bytes are Chinese characters (and the reader refuses the file as not UTF-8).
    let utf8 = std::str::from_utf8(bytes).is_ok();
    let mut problems = Vec::new();
    let mut state = RecordStart;
    let (mut line, mut column, mut quote_line, mut quote_column) = (0u64, 0usize, 0u64, 0usize);
    let mut at = |line: u64, column: Option<usize>, what: Malformed| {
        problems.push(Problem {
            line: line.max(1),
            column,
            what,
        })
    };
    for (i, &b) in bytes.iter().enumerate() {
        if state == RecordStart && b != b'\r' && b != b'\n' {
            line += 1;
            column = 0;
            state = FieldStart;
        }
        let in_cell = (state != RecordStart).then_some(column);
        // Control characters: C0 and DEL are single bytes that never occur inside a
        // multi-byte UTF-8 character; C1 (U+0080..U+009F) is C2 80..C2 9F, and C2 is
        // always a lead byte.
        let control = match b {
            b'\t' | b'\n' => None,
            b'\r' => (bytes.get(i + 1) != Some(&b'\n')).then_some(Malformed::LoneCarriageReturn),
            0x00..=0x1f | 0x7f => Some(Malformed::ControlCharacter(char::from(b))),
            0xc2 if utf8 => match bytes.get(i + 1) {
                Some(&c @ 0x80..=0x9f) => {
                    char::from_u32(u32::from(c)).map(Malformed::ControlCharacter)
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(what) = control {
            // A lone CR outside quotes ends the row: it belongs to no cell.
            let cell = match (what, state) {
                (Malformed::LoneCarriageReturn, s) if s != Quoted => None,
                _ => in_cell,
            };
            at(line, cell, what);
        }
        state = match (state, b) {
            (RecordStart, _) => RecordStart,
            (FieldStart, b'"') => {
                (quote_line, quote_column) = (line, column);
                Quoted
            }
            (Quoted, b'"') => QuoteInQuoted,
            (Quoted, _) => Quoted,
            (QuoteInQuoted, b'"') => Quoted,
            (FieldStart | Unquoted | QuoteInQuoted | AfterQuote, b',') => {
                column += 1;
                FieldStart
            }
            (FieldStart | Unquoted | QuoteInQuoted | AfterQuote, b'\r' | b'\n') => RecordStart,
            (QuoteInQuoted | AfterQuote, b' ' | b'\t') => AfterQuote,
            (QuoteInQuoted | AfterQuote, _) => {
                at(line, Some(column), Malformed::TextAfterQuote);
                Unquoted
            }
            (FieldStart | Unquoted, _) => Unquoted,
        };
    }
    if state == Quoted {
        at(quote_line, Some(quote_column), Malformed::UnterminatedQuote);
    }
    problems
}

/// A problem as the importer reports it: `file:line: reason`, naming the column by its
/// header.
pub fn describe(file: &str, p: &Problem, headers: &[String]) -> String {
    let column = match p.column {
        Some(i) => match headers.get(i) {
            Some(h) => format!(" column {h:?}:"),
            None => format!(" column {}:", i + 1),
        },
        None => String::new(),
    };
    let line = p.line;
    match p.what {
        Malformed::ControlCharacter(c) => format!(
            "{file}:{line}:{column} a control character (U+{:04X}) in a cell; only TAB and line breaks are allowed",
            u32::from(c)
        ),
        Malformed::LoneCarriageReturn => format!(
            "{file}:{line}:{column} a carriage return (CR) without a line feed; save the sheet as \"CSV UTF-8\" with Windows or Unix line ends"
        ),
        Malformed::UnterminatedQuote => format!(
            "{file}:{line}:{column} a quoted cell is not closed (a \" is missing); nothing after it could be read"
        ),
        Malformed::TextAfterQuote => format!(
            "{file}:{line}:{column} text after the closing quote of a cell; quote the whole cell and double any \" inside it"
        ),
    }
}

/// Rows read from a file, each with its line number (the header is line 1).
pub type Rows<T> = Vec<(u64, T)>;

/// Read `bytes` (the file `file`, UTF-8 with a header row) as rows of `T`, each with its
/// line number. Every cell is trimmed and [`restore`]d before it is deserialised. The
/// text is checked with [`scan`] first: if it is malformed, no row is read and each
/// problem is returned with its `file:line: reason`. Other problems (a row that does not
/// fit `T`, text that is not UTF-8) go to `errors` as `file:line: reason`, and that row
/// is skipped.
pub fn read_rows<T: DeserializeOwned>(
    file: &str,
    bytes: &[u8],
    errors: &mut Vec<String>,
) -> Result<Rows<T>, Vec<(Problem, String)>> {
    let problems = scan(bytes);
    if !problems.is_empty() {
        // The header names the columns (read leniently: it may be where the problem is).
        let headers: Vec<String> = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes)
            .records()
            .next()
            .and_then(Result::ok)
            .map(|h| h.iter().map(|c| c.trim().to_owned()).collect())
            .unwrap_or_default();
        return Err(problems
            .into_iter()
            .map(|p| {
                let text = describe(file, &p, &headers);
                (p, text)
            })
            .collect());
    }
    let mut rdr = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = match rdr.headers() {
        Ok(h) => {
            let mut h = h.clone();
            h.trim();
            h
        }
        Err(e) => {
            errors.push(format!("{file}:1: {}", reason(&e)));
            return Ok(Vec::new());
        }
    };
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        // Line numbers as a spreadsheet shows them: the header is line 1.
        let line = i as u64 + 2;
        let parsed = rec.and_then(|mut rec| {
            rec.trim();
            let mut restored: csv::StringRecord = rec.iter().map(restore).collect();
            restored.set_position(rec.position().cloned());
            restored.deserialize::<T>(Some(&headers))
        });
        match parsed {
            Ok(row) => rows.push((line, row)),
            Err(e) => errors.push(format!("{file}:{line}: {}", reason(&e))),
        }
    }
    Ok(rows)
}

fn reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => {
            "not UTF-8 text (save the sheet as \"CSV UTF-8\")".to_owned()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DANGEROUS: [&str; 12] = [
        "=1+1",
        "+1+1",
        "-1+1",
        "@SUM(A1)",
        "\t=1+1",
        "\r=1+1",
        "\n=1+1",
        " =1+1",
        "\u{3000}=1+1",
        "＝1+1",
        "＋1",
        "\0=1",
    ];

    #[test]
    fn risky_cells_get_one_apostrophe_and_get_it_back() {
        for cell in DANGEROUS {
            assert_eq!(neutralise(cell), format!("'{cell}"), "{cell:?}");
            assert_eq!(restore(&neutralise(cell)), cell, "{cell:?}");
            // An apostrophe in front of a risky cell is data too.
            let quoted = format!("'{cell}");
            assert_eq!(neutralise(&quoted), format!("''{cell}"));
            assert_eq!(restore(&neutralise(&quoted)), quoted);
        }
        for cell in [
            "",
            "'",
            "''",
            "Li Wang",
            "'s-Hertogenbosch",
            "O'Brien",
            "1 Lane",
            "a=b",
            "张三",
            "e-1",
            "8613800000000",
        ] {
            assert_eq!(neutralise(cell), cell, "{cell:?} is left alone");
            assert_eq!(restore(cell), cell, "{cell:?} is read as it is");
        }
        // What people type in a sheet: an apostrophe before a formula is Excel's "text"
        // mark and goes; before anything else it is part of the value.
        assert_eq!(restore("'=1+1"), "=1+1");
        assert_eq!(restore("'abc"), "'abc");
    }

    #[test]
    fn the_writer_neutralises_every_cell_of_a_serialised_row() {
        #[derive(Serialize)]
        struct Row<'a> {
            id: &'a str,
            name: &'a str,
            phone: Option<&'a str>,
            priority: i64,
        }
        let mut w = Writer::from_writer(Vec::new());
        w.serialize(&Row {
            id: "-x",
            name: "=HYPERLINK(\"http://e.vil\",\"x\")",
            phone: Some("+8613800000000"),
            priority: -5,
        })
        .expect("row");
        w.serialize(&Row {
            id: "e-2",
            name: "\r=1+1",
            phone: None,
            priority: 3,
        })
        .expect("row");
        w.write_record(["@x", "plain", "", "0"]).expect("record");
        let text = String::from_utf8(w.into_inner().expect("flush")).expect("utf-8");
        assert_eq!(
            text,
            "id,name,phone,priority\n\
             '-x,\"'=HYPERLINK(\"\"http://e.vil\"\",\"\"x\"\")\",'+8613800000000,'-5\n\
             e-2,\"'\r=1+1\",,3\n\
             '@x,plain,,0\n"
        );
    }

    #[test]
    fn a_first_cell_that_begins_with_a_byte_order_mark_keeps_it() {
        let mut w = Writer::from_writer(Vec::new());
        w.serialize(&("\u{feff}x", "y")).expect("row");
        let text = String::from_utf8(w.into_inner().expect("flush")).expect("utf-8");
        assert_eq!(text, "\u{feff}x,y\n");
    }

    #[test]
    fn long_cells_and_many_columns_are_split_back_whole() {
        // Longer than the splitter's first buffers (256 bytes, 16 cells).
        // (Not ending in whitespace: the import trims cells, as it always has.)
        let long = format!("={}.", "x,\"y\"\n".repeat(200));
        let row: Vec<String> = (0..40)
            .map(|i| {
                if i == 7 {
                    long.clone()
                } else {
                    format!("-{i}")
                }
            })
            .collect();
        let mut w = Writer::from_writer(Vec::new());
        w.serialize(&row).expect("row");
        w.serialize(&row).expect("row");
        let bytes = w.into_inner().expect("flush");
        let mut errors = Vec::new();
        let back: Rows<Vec<String>> = read_rows("x.csv", &bytes, &mut errors).expect("well-formed");
        assert!(errors.is_empty(), "{errors:?}");
        // The first row is read as the header; the second comes back as it was.
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1, row);
    }

    fn problems(text: &str) -> Vec<(u64, Option<usize>, &'static str)> {
        scan(text.as_bytes())
            .into_iter()
            .map(|p| (p.line, p.column, p.what.code()))
            .collect()
    }

    #[test]
    fn the_scan_refuses_controls_lone_crs_and_broken_quotes_where_they_are() {
        assert_eq!(
            problems("id,name\nt-1,a\0b\n"),
            [(2, Some(1), "control_character")]
        );
        assert_eq!(
            problems("id,name\nt-1,ab\x1b\n"),
            [(2, Some(1), "control_character")]
        );
        assert_eq!(
            problems("id,name\nt-1,\"a\x7f\"\n"),
            [(2, Some(1), "control_character")]
        );
        assert_eq!(
            problems("id,name\nt-1,a\u{85}\n"),
            [(2, Some(1), "control_character")]
        );
        // A lone CR ends a line in the csv crate; inside quotes it is in a cell.
        assert_eq!(
            problems("id,name\rt-1,a\n"),
            [(1, None, "lone_carriage_return")]
        );
        assert_eq!(
            problems("id,name\nt-1,\"a\rb\"\n"),
            [(2, Some(1), "lone_carriage_return")]
        );
        assert_eq!(
            problems("id,name\nt-1,a\nt-2,\"b\nt-3,c\n"),
            [(3, Some(1), "unterminated_quote")]
        );
        assert_eq!(
            problems("id,name\nt-1,\"Li\"Wang\n"),
            [(2, Some(1), "text_after_quote")]
        );
        // Allowed: TAB, CR LF and LF line ends, line breaks and doubled quotes inside
        // quotes, spaces after a closing quote, a byte order mark, a quoted header,
        // non-ASCII text, and a quote inside an unquoted cell (the csv crate reads it).
        for fine in [
            "id,name\r\nt-1,a\tb\r\n",
            "\u{feff}\"id\",\"name\"\nt-1,\"Li \"\"the\"\" Wang\r\nline 2\nline 3\"  \n",
            "id,name\n\n\nt-1,东城\n",
            "id,name\nt-1,5\" tall\n",
            "id,name\nt-1,\"\"",
            "",
        ] {
            assert_eq!(problems(fine), [], "{fine:?}");
        }
    }

    #[test]
    fn the_scan_counts_rows_as_the_csv_crate_does() {
        // Blank lines, cells with line breaks, CR LF, a last line without a line end.
        let text = "\u{feff}id,name\r\n\r\nt-1,\"a\r\nb\"\n\nt-2,\"c\"\"\nd\"\nt-3,e\n\n\nt-4,\0";
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let crate_rows: Vec<String> = rdr
            .records()
            .map(|r| r.expect("record")[0].to_owned())
            .collect();
        assert_eq!(crate_rows, ["id", "t-1", "t-2", "t-3", "t-4"]);
        // t-4 is the csv crate's fifth record: the scan puts the NUL on line 5.
        assert_eq!(problems(text), [(5, Some(1), "control_character")]);
    }

    #[test]
    fn read_rows_restores_cells_and_reports_bad_rows() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Row {
            id: String,
            priority: i64,
        }
        let mut errors = Vec::new();
        let rows: Vec<(u64, Row)> = read_rows(
            "x.csv",
            b" id , priority\n'-a, '-5 \nb,x\n''=c,1\n",
            &mut errors,
        )
        .expect("well-formed");
        assert_eq!(
            rows,
            [
                (
                    2,
                    Row {
                        id: "-a".into(),
                        priority: -5
                    }
                ),
                (
                    4,
                    Row {
                        id: "'=c".into(),
                        priority: 1
                    }
                )
            ]
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("x.csv:3: "), "{errors:?}");
    }

    #[test]
    fn problems_name_the_file_line_and_column_but_not_the_cell() {
        let p = scan(b"id,name\nt-1,secret\0name\n");
        let headers = ["id".to_owned(), "name".to_owned()];
        let text = describe("towns.csv", &p[0], &headers);
        assert_eq!(
            text,
            "towns.csv:2: column \"name\": a control character (U+0000) in a cell; only TAB and line breaks are allowed"
        );
        assert!(!text.contains("secret"));
    }

    #[test]
    fn ten_thousand_rows_go_out_and_come_back_intact() {
        #[derive(Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
        struct Row {
            id: String,
            address: String,
        }
        let rows: Vec<Row> = (0..10_000)
            .map(|i| Row {
                id: format!("h-{i}"),
                address: if i % 2 == 0 {
                    format!("{i} Lane")
                } else {
                    format!("=1+{i}")
                },
            })
            .collect();
        let mut w = Writer::from_writer(Vec::new());
        for r in &rows {
            w.serialize(r).expect("row");
        }
        let bytes = w.into_inner().expect("flush");
        let mut errors = Vec::new();
        let back: Vec<Row> = read_rows("h.csv", &bytes, &mut errors)
            .expect("well-formed")
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(back, rows);
    }
}
