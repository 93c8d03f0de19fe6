-- Duty rosters (issue 6, item 6): who is on duty for a staff area at an instant.
--
-- An area is a village, a town or the district (area_kind, area_id; the district is
-- ('district', 'district'), as in contacts). An area without a row in `rosters` has no
-- roster: every staff contact of the area is notified, as before this migration.
-- Times of day are local (the rules file's fixed `timezone_offset`), in minutes after
-- midnight; dates are local dates 'YYYY-MM-DD' (they sort as text). hub/src/roster.rs
-- explains how shifts, overrides and the fallback combine.

CREATE TABLE rosters (
    area_kind   TEXT NOT NULL,                      -- village | town | district
    area_id     TEXT NOT NULL,
    -- on duty whenever no shift is; NULL: such hours are gaps
    fallback_contact_id TEXT REFERENCES contacts(id),
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (area_kind, area_id)
);

-- The weekly pattern.
CREATE TABLE roster_shifts (
    id           INTEGER PRIMARY KEY,
    area_kind    TEXT NOT NULL,
    area_id      TEXT NOT NULL,
    weekdays     INTEGER NOT NULL,      -- bit 0 Monday ... bit 6 Sunday
    start_minute INTEGER NOT NULL,      -- 0..1439
    end_minute   INTEGER NOT NULL,      -- 0..1440; not after start_minute: ends the next day
    contact_id   TEXT NOT NULL REFERENCES contacts(id),
    FOREIGN KEY (area_kind, area_id) REFERENCES rosters(area_kind, area_id) ON DELETE CASCADE
);
CREATE INDEX roster_shifts_area ON roster_shifts(area_kind, area_id);

-- Changes for a range of dates: a holiday plan (start/end set, replaces_contact_id NULL:
-- the weekly pattern does not apply on those dates) or a replacement (sick leave:
-- replaces_contact_id's shifts on those dates go to contact_id; start/end NULL).
CREATE TABLE roster_overrides (
    id           INTEGER PRIMARY KEY,
    area_kind    TEXT NOT NULL,
    area_id      TEXT NOT NULL,
    first_day    TEXT NOT NULL,         -- local date, inclusive
    last_day     TEXT NOT NULL,         -- local date, inclusive
    start_minute INTEGER,
    end_minute   INTEGER,
    contact_id   TEXT NOT NULL REFERENCES contacts(id),
    replaces_contact_id TEXT REFERENCES contacts(id),
    note         TEXT NOT NULL DEFAULT '',
    -- 'import' (roster_overrides.csv: a new import of the area replaces these) or the
    -- account that set it over REST (kept until deleted)
    set_by       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    CHECK ((replaces_contact_id IS NULL AND start_minute IS NOT NULL AND end_minute IS NOT NULL)
        OR (replaces_contact_id IS NOT NULL AND start_minute IS NULL AND end_minute IS NULL)),
    FOREIGN KEY (area_kind, area_id) REFERENCES rosters(area_kind, area_id) ON DELETE CASCADE
);
CREATE INDEX roster_overrides_area ON roster_overrides(area_kind, area_id, last_day);
