//! Read models for the web pages: who lives where (the board shows names and addresses
//! next to alarms and searches them), a household's devices and contacts, and the
//! acknowledgement times the supervisor view charts. Reads only.
//!
//! Names, addresses and phone numbers leave here only in HTTP answers to callers whose
//! scope covers them; nothing here logs them.

use alert_rules::Millis;
use serde::Serialize;
use sqlx::{Row, Sqlite};

use super::{push_scope_in, Result, Scope, Store};

/// A household as the board lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HouseholdInfo {
    pub id: String,
    pub address: String,
    pub village_id: String,
    pub village_name: String,
    pub town_id: String,
    pub town_name: String,
    /// The elders living there (names), by id.
    pub elders: Vec<String>,
}

/// An elder of a household, with the phone number the hub calls.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ElderInfo {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
}

/// A device as registered (its live state comes from the rules stage).
#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct DeviceInfo {
    pub id: String,
    pub kind: String,
    pub vendor: String,
    pub revoked_at: Option<i64>,
}

/// A contact as a page shows it.
#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct ContactInfo {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub role: String,
    pub priority: i64,
}

/// A village with its town, for the board's filters and the supervisor's chart.
#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct VillageInfo {
    pub id: String,
    pub name: String,
    pub town_id: String,
    pub town_name: String,
}

/// Someone who may appear as an actor on the pages (acknowledged by, timeline): a name and
/// a role, never a phone number.
#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub role: String,
}

/// When an alarm was raised and, if it was, acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct AckTime {
    pub raised_at: i64,
    pub acked_at: Option<i64>,
}

const HOUSEHOLD_SELECT: &str = "SELECT h.id, h.address, h.village_id, v.name AS village_name, v.town_id, t.name AS town_name FROM households h JOIN villages v ON v.id = h.village_id JOIN towns t ON t.id = v.town_id WHERE 1 = 1";

impl Store {
    /// The households in `scope` with their elders' names, by id.
    pub async fn households_in(&self, scope: &Scope) -> Result<Vec<HouseholdInfo>> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(HOUSEHOLD_SELECT);
        push_scope_in(&mut qb, scope, ["v.town_id", "h.village_id", "h.id"]);
        qb.push(" ORDER BY h.id");
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(HouseholdInfo {
                id: r.try_get("id")?,
                address: r.try_get("address")?,
                village_id: r.try_get("village_id")?,
                village_name: r.try_get("village_name")?,
                town_id: r.try_get("town_id")?,
                town_name: r.try_get("town_name")?,
                elders: Vec::new(),
            });
        }
        // Elders in one query, matched by household (both sorted by id).
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new("SELECT e.household_id, e.name FROM elders e JOIN households h ON h.id = e.household_id JOIN villages v ON v.id = h.village_id WHERE 1 = 1");
        push_scope_in(&mut qb, scope, ["v.town_id", "h.village_id", "h.id"]);
        qb.push(" ORDER BY e.household_id, e.id");
        let elders = qb.build().fetch_all(&self.pool).await?;
        let by_id: std::collections::HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, h)| (h.id.clone(), i))
            .collect();
        for r in &elders {
            let h: String = r.try_get("household_id")?;
            if let Some(&i) = by_id.get(&h) {
                out[i].elders.push(r.try_get("name")?);
            }
        }
        Ok(out)
    }

    /// One household, if it exists.
    pub async fn household_info(&self, id: &str) -> Result<Option<HouseholdInfo>> {
        Ok(self
            .households_in(&Scope::Household(id.to_owned()))
            .await?
            .into_iter()
            .next())
    }

    /// The elders of a household, by id.
    pub async fn elders_of(&self, household: &str) -> Result<Vec<ElderInfo>> {
        let rows =
            sqlx::query("SELECT id, name, phone FROM elders WHERE household_id = $1 ORDER BY id")
                .bind(household)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(ElderInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    phone: r.try_get("phone")?,
                })
            })
            .collect()
    }

    /// The devices registered to a household (revoked ones too, marked), by id.
    pub async fn devices_of(&self, household: &str) -> Result<Vec<DeviceInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, kind, vendor, revoked_at FROM devices WHERE household_id = $1 ORDER BY id",
        )
        .bind(household)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The devices of every household in `scope`: (household, device) pairs, not revoked.
    pub async fn device_ids_in(&self, scope: &Scope) -> Result<Vec<(String, String)>> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new("SELECT d.household_id, d.id FROM devices d JOIN households h ON h.id = d.household_id JOIN villages v ON v.id = h.village_id WHERE d.revoked_at IS NULL");
        push_scope_in(&mut qb, scope, ["v.town_id", "h.village_id", "h.id"]);
        qb.push(" ORDER BY d.household_id, d.id");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The family contacts of a household, highest priority first.
    pub async fn family_contacts(&self, household: &str) -> Result<Vec<ContactInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, name, phone, role, priority FROM contacts WHERE scope_kind = 'household' AND scope_id = $1 ORDER BY priority DESC, id",
        )
        .bind(household)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Contacts by id, in the order asked (unknown ids are left out).
    pub async fn contacts_by_id(&self, ids: &[String]) -> Result<Vec<ContactInfo>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT id, name, phone, role, priority FROM contacts WHERE id IN (",
        );
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(id.clone());
        }
        qb.push(")");
        let found: Vec<ContactInfo> = qb.build_query_as().fetch_all(&self.pool).await?;
        Ok(ids
            .iter()
            .filter_map(|id| found.iter().find(|c| &c.id == id).cloned())
            .collect())
    }

    /// The villages in `scope` (with their towns), by town then village id.
    pub async fn villages_in(&self, scope: &Scope) -> Result<Vec<VillageInfo>> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new("SELECT v.id, v.name, v.town_id, t.name AS town_name FROM villages v JOIN towns t ON t.id = v.town_id WHERE 1 = 1");
        // Households are not areas: a family scope lists no villages.
        match scope {
            Scope::Household(_) | Scope::Households(_) => qb.push(" AND 1 = 0"),
            _ => {
                push_scope_in(&mut qb, scope, ["v.town_id", "v.id", "NULL"]);
                &mut qb
            }
        };
        qb.push(" ORDER BY v.town_id, v.id");
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    /// The people who may act on alarms in `scope`, by id: the contacts of its households,
    /// the staff of its villages and of their towns, and the district's staff (who can all
    /// acknowledge them), so pages can show names instead of ids.
    pub async fn people_for(&self, scope: &Scope) -> Result<Vec<Person>> {
        if *scope == Scope::District {
            return Ok(
                sqlx::query_as("SELECT id, name, role FROM contacts ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        let households = self.households_in(scope).await?;
        let villages = self.villages_in(scope).await?;
        let mut areas: Vec<(&str, &str)> = vec![("district", "district")];
        for h in &households {
            areas.push(("household", &h.id));
            areas.push(("village", &h.village_id));
            areas.push(("town", &h.town_id));
        }
        for v in &villages {
            areas.push(("village", &v.id));
            areas.push(("town", &v.town_id));
        }
        areas.sort_unstable();
        areas.dedup();
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT id, name, role FROM contacts WHERE (scope_kind, scope_id) IN (",
        );
        let mut list = qb.separated(", ");
        for (kind, id) in &areas {
            list.push("(")
                .push_bind_unseparated(kind.to_string())
                .push_unseparated(", ")
                .push_bind_unseparated(id.to_string())
                .push_unseparated(")");
        }
        qb.push(") ORDER BY id");
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    /// Alarms in `scope` raised in `[from, to)`, with when they were acknowledged:
    /// the supervisor's time-to-acknowledge.
    pub async fn ack_times(&self, scope: &Scope, from: Millis, to: Millis) -> Result<Vec<AckTime>> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT raised_at, acked_at FROM alarms WHERE raised_at >= ",
        );
        qb.push_bind(from).push(" AND raised_at < ").push_bind(to);
        push_scope_in(&mut qb, scope, ["town_id", "village_id", "household_id"]);
        qb.push(" ORDER BY raised_at");
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Store {
        let s = Store::connect("sqlite::memory:").await.expect("store");
        s.upsert_town("t-1", "East Town").await.expect("town");
        s.upsert_town("t-2", "West Town").await.expect("town");
        s.upsert_village("v-1", "t-1", "Willow").await.expect("v");
        s.upsert_village("v-2", "t-2", "Pine").await.expect("v");
        s.upsert_household("h-1", "v-1", "1 Willow Lane")
            .await
            .expect("h");
        s.upsert_household("h-2", "v-2", "2 Pine Road")
            .await
            .expect("h");
        s.upsert_elder("e-2", "h-2", "Li Mei", None)
            .await
            .expect("e");
        s.upsert_elder("e-1", "h-2", "Wang Fang", None)
            .await
            .expect("e");
        s
    }

    #[tokio::test]
    async fn households_in_a_scope_come_with_their_places() {
        let s = store().await;
        let all = s.households_in(&Scope::District).await.expect("all");
        assert_eq!(
            all.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["h-1", "h-2"]
        );
        let west = s
            .households_in(&Scope::Town("t-2".into()))
            .await
            .expect("town");
        assert_eq!(west.len(), 1);
        assert_eq!(west[0].address, "2 Pine Road");
        assert_eq!(west[0].village_name, "Pine");
        assert_eq!(west[0].town_name, "West Town");
        assert_eq!(west[0].elders, ["Wang Fang", "Li Mei"], "by elder id");
        assert!(all[0].elders.is_empty());
        assert!(s
            .households_in(&Scope::Households(vec![]))
            .await
            .expect("none")
            .is_empty());
        for (id, name, role, scope) in [
            (
                "c-f1",
                "Family One",
                "family",
                Scope::Household("h-1".into()),
            ),
            (
                "c-v1",
                "Village One",
                "village",
                Scope::Village("v-1".into()),
            ),
            (
                "c-v2",
                "Village Two",
                "village",
                Scope::Village("v-2".into()),
            ),
            ("c-t1", "Town One", "town", Scope::Town("t-1".into())),
            ("c-d", "District", "district", Scope::District),
        ] {
            s.upsert_contact(
                id,
                name,
                Some("+8613800000000"),
                role,
                &scope,
                0,
                None,
                &format!("tok-{id}"),
                0,
            )
            .await
            .expect("contact");
        }
        let ids = |p: Vec<Person>| p.into_iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s
                .people_for(&Scope::Household("h-1".into()))
                .await
                .expect("people")),
            ["c-d", "c-f1", "c-t1", "c-v1"],
            "a family sees who may act on its alarms"
        );
        assert_eq!(
            ids(s
                .people_for(&Scope::Village("v-2".into()))
                .await
                .expect("people")),
            ["c-d", "c-v2"]
        );
        assert_eq!(
            s.people_for(&Scope::District).await.expect("people").len(),
            5
        );
        let villages = s.villages_in(&Scope::Town("t-1".into())).await.expect("v");
        assert_eq!(villages.len(), 1);
        assert_eq!(villages[0].id, "v-1");
        assert!(s
            .villages_in(&Scope::Household("h-1".into()))
            .await
            .expect("v")
            .is_empty());
    }
}
