//! CSV files for the hub's district import (`hub admin import`).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::District;

/// Quote a field when it needs it (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.trim() != s {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn write_file(dir: &Path, name: &str, header: &[&str], rows: Vec<Vec<&str>>) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(dir.join(name))?);
    writeln!(w, "{}", header.join(","))?;
    for row in rows {
        let line = row.into_iter().map(field).collect::<Vec<_>>().join(",");
        writeln!(w, "{line}")?;
    }
    w.flush()
}

pub(crate) fn write_csv(d: &District, dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write_file(
        dir,
        "towns.csv",
        &["id", "name"],
        d.towns
            .iter()
            .map(|t| vec![t.id.as_str(), &t.name])
            .collect(),
    )?;
    write_file(
        dir,
        "villages.csv",
        &["id", "town_id", "name"],
        d.villages
            .iter()
            .map(|v| vec![v.id.as_str(), &v.town_id, &v.name])
            .collect(),
    )?;
    write_file(
        dir,
        "households.csv",
        &["id", "village_id", "address"],
        d.households
            .iter()
            .map(|h| vec![h.id.as_str(), &h.village_id, &h.address])
            .collect(),
    )?;
    write_file(
        dir,
        "elders.csv",
        &["id", "household_id", "name"],
        d.households
            .iter()
            .map(|h| vec![h.elder.id.as_str(), &h.id, &h.elder.name])
            .collect(),
    )?;
    write_file(
        dir,
        "devices.csv",
        &["id", "household_id", "kind", "vendor", "room"],
        d.households
            .iter()
            .flat_map(|h| {
                h.devices.iter().map(move |dev| {
                    vec![
                        dev.id.as_str(),
                        &h.id,
                        dev.kind,
                        "anxin-sim",
                        dev.room.as_deref().unwrap_or(""),
                    ]
                })
            })
            .collect(),
    )
}
