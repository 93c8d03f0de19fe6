//! Importing the district from CSV files (the bureau keeps a spreadsheet, not an API).
//!
//! A directory holds `towns.csv`, `villages.csv`, `households.csv`, `elders.csv` and
//! `devices.csv` (any may be absent). Every row is validated — ids, required fields,
//! references to rows in the same import or already in the database — and every problem
//! is reported as `file:line: reason`. Nothing is written unless every row is valid, and
//! then everything is written in one transaction.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::ingest::contract::DeviceId;

#[derive(Debug, Clone, Deserialize)]
pub struct TownRow {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VillageRow {
    pub id: String,
    pub town_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HouseholdRow {
    pub id: String,
    pub village_id: String,
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ElderRow {
    pub id: String,
    pub household_id: String,
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeviceRow {
    pub id: String,
    pub household_id: String,
    pub kind: String,
    #[serde(default)]
    pub vendor: Option<String>,
    /// Optional: without it a secret is generated and reported once.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A validated import, ready to be written.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub towns: Vec<TownRow>,
    pub villages: Vec<VillageRow>,
    pub households: Vec<HouseholdRow>,
    pub elders: Vec<ElderRow>,
    pub devices: Vec<DeviceRow>,
}

/// Every problem found, one per line, `file:line: reason`.
#[derive(Debug, thiserror::Error)]
#[error("import refused, nothing was written:\n{}", .0.join("\n"))]
pub struct ImportErrors(pub Vec<String>);

pub const DEVICE_KINDS: [&str; 12] = [
    "sos",
    "fall",
    "motion",
    "door",
    "bed",
    "smoke",
    "gas",
    "water_leak",
    "water_meter",
    "power_meter",
    "wearable",
    "thermometer",
];

fn strip<T>(rows: Vec<(u64, T)>) -> Vec<T> {
    rows.into_iter().map(|(_, r)| r).collect()
}

fn read<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    file: &str,
    errors: &mut Vec<String>,
) -> Vec<(u64, T)> {
    let path = dir.join(file);
    if !path.exists() {
        return Vec::new();
    }
    let mut rdr = match csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(&path)
    {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("{file}: {e}"));
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for (i, rec) in rdr.deserialize::<T>().enumerate() {
        // Line numbers as a spreadsheet shows them: the header is line 1.
        let line = i as u64 + 2;
        match rec {
            Ok(row) => rows.push((line, row)),
            Err(e) => {
                let reason = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => {
                        "not UTF-8 text (save the sheet as \"CSV UTF-8\")".to_owned()
                    }
                    _ => e.to_string(),
                };
                errors.push(format!("{file}:{line}: {reason}"));
            }
        }
    }
    rows
}

/// Read and validate a directory. `known` answers "does this id already exist in the
/// database?" for references that are not in the files themselves.
pub fn load(dir: &Path, known: &dyn Fn(&str, &str) -> bool) -> Result<Batch, ImportErrors> {
    let mut errors = Vec::new();
    let towns = read::<TownRow>(dir, "towns.csv", &mut errors);
    let villages = read::<VillageRow>(dir, "villages.csv", &mut errors);
    let households = read::<HouseholdRow>(dir, "households.csv", &mut errors);
    let elders = read::<ElderRow>(dir, "elders.csv", &mut errors);
    let devices = read::<DeviceRow>(dir, "devices.csv", &mut errors);

    let mut check_ids = |file: &str, ids: Vec<(u64, &str)>| -> HashSet<String> {
        let mut seen = HashSet::new();
        for (line, id) in ids {
            if let Err(e) = DeviceId::parse(id) {
                errors.push(format!("{file}:{line}: id {id:?}: {e}"));
            } else if !seen.insert(id.to_owned()) {
                errors.push(format!("{file}:{line}: duplicate id {id:?}"));
            }
        }
        seen
    };
    let town_ids = check_ids(
        "towns.csv",
        towns.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );
    let village_ids = check_ids(
        "villages.csv",
        villages.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );
    let household_ids = check_ids(
        "households.csv",
        households
            .iter()
            .map(|(l, r)| (*l, r.id.as_str()))
            .collect(),
    );
    check_ids(
        "elders.csv",
        elders.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );
    check_ids(
        "devices.csv",
        devices.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );

    let mut refers = |file: &str, line: u64, table: &str, id: &str, here: &HashSet<String>| {
        if !here.contains(id) && !known(table, id) {
            errors.push(format!(
                "{file}:{line}: unknown {} {id:?}",
                table.trim_end_matches('s')
            ));
        }
    };
    for (line, r) in &villages {
        refers("villages.csv", *line, "towns", &r.town_id, &town_ids);
    }
    for (line, r) in &households {
        refers(
            "households.csv",
            *line,
            "villages",
            &r.village_id,
            &village_ids,
        );
    }
    for (line, r) in &elders {
        refers(
            "elders.csv",
            *line,
            "households",
            &r.household_id,
            &household_ids,
        );
    }
    for (line, r) in &devices {
        refers(
            "devices.csv",
            *line,
            "households",
            &r.household_id,
            &household_ids,
        );
    }
    for (line, r) in &towns {
        if r.name.is_empty() {
            errors.push(format!("towns.csv:{line}: name is empty"));
        }
    }
    for (line, r) in &devices {
        if !DEVICE_KINDS.contains(&r.kind.as_str()) {
            errors.push(format!(
                "devices.csv:{line}: kind {:?} is not one of {}",
                r.kind,
                DEVICE_KINDS.join(", ")
            ));
        }
    }
    for (line, r) in &elders {
        if let Some(p) = r.phone.as_deref().filter(|p| !p.is_empty()) {
            let digits = p.strip_prefix('+').unwrap_or(p);
            if digits.len() < 5 || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit())
            {
                errors.push(format!(
                    "elders.csv:{line}: phone must be 5-15 digits with an optional leading +"
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(ImportErrors(errors));
    }
    Ok(Batch {
        towns: strip(towns),
        villages: strip(villages),
        households: strip(households),
        elders: strip(elders),
        devices: strip(devices),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for (name, body) in files {
            std::fs::write(d.path().join(name), body).expect("write");
        }
        d
    }

    #[test]
    fn a_valid_directory_loads() {
        let d = dir(&[
            ("towns.csv", "id,name\nt-1,East\n"),
            ("villages.csv", "id,town_id,name\nv-1,t-1,One\n"),
            ("households.csv", "id,village_id,address\nh-1,v-1,1 Lane\n"),
            (
                "elders.csv",
                "id,household_id,name,phone\ne-1,h-1,Elder,+8613800000000\n",
            ),
            (
                "devices.csv",
                "id,household_id,kind,vendor,secret\nh-1-sos,h-1,sos,acme,s3cret\n",
            ),
        ]);
        let b = load(d.path(), &|_, _| false).expect("valid");
        assert_eq!(
            (
                b.towns.len(),
                b.villages.len(),
                b.households.len(),
                b.elders.len(),
                b.devices.len()
            ),
            (1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn every_bad_row_is_reported_with_file_and_line() {
        let d = dir(&[
            ("towns.csv", "id,name\nt-1,East\nt-1,Again\n"),
            ("villages.csv", "id,town_id,name\nv-1,t-9,One\n"),
            ("households.csv", "id,village_id\nh-1,v-1\n"),
            (
                "elders.csv",
                "id,household_id,name,phone\ne-1,h-2,Elder,12ab\n",
            ),
            ("devices.csv", "id,household_id,kind\nBAD ID,h-1,toaster\n"),
        ]);
        let err = load(d.path(), &|_, _| false)
            .expect_err("invalid")
            .0
            .join("\n");
        for needle in [
            "towns.csv:3: duplicate id \"t-1\"",
            "villages.csv:2: unknown town \"t-9\"",
            "households.csv:2:",
            "elders.csv:2: unknown household \"h-2\"",
            "elders.csv:2: phone",
            "devices.csv:2: id \"BAD ID\"",
            "devices.csv:2: kind \"toaster\"",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn references_to_rows_already_in_the_database_are_fine() {
        let d = dir(&[("households.csv", "id,village_id,address\nh-9,v-db,9 Lane\n")]);
        assert!(load(d.path(), &|table, id| table == "villages" && id == "v-db").is_ok());
    }

    #[test]
    fn a_spreadsheet_saved_in_gbk_is_refused_clearly() {
        let d = tempfile::tempdir().expect("tempdir");
        // "东城" in GBK.
        std::fs::write(
            d.path().join("towns.csv"),
            [
                b"id,name\nt-1,".as_slice(),
                &[0xb6, 0xab, 0xb3, 0xc7],
                b"\n",
            ]
            .concat(),
        )
        .expect("write");
        let err = load(d.path(), &|_, _| false).expect_err("gbk").0.join("\n");
        assert!(err.contains("towns.csv:2: not UTF-8"), "{err}");
    }
}
