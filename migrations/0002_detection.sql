-- Issue 4 (detection): grouped incidents, care visits, away modes.
--
-- A grouped incident (many homes of one village offline at once) concerns a village,
-- not one household, so alarms.household_id becomes nullable. SQLite cannot drop a
-- NOT NULL constraint in place: the table is rebuilt in the documented way
-- (https://www.sqlite.org/lang_altertable.html#otheralter). The hub connects with
-- foreign keys on and the migration runs in a transaction, where they cannot be turned
-- off: they are deferred instead, and the deferral is ended once alarm_timeline's rows
-- point at the rebuilt table again (dropping the old table counted its rows' references
-- as pending violations; tests/tests/startup.rs migrates a populated database).
PRAGMA defer_foreign_keys = ON;

CREATE TABLE alarms_new (
    id                TEXT PRIMARY KEY,
    -- NULL for a grouped incident about a whole village
    household_id      TEXT REFERENCES households(id),
    village_id        TEXT NOT NULL,
    town_id           TEXT NOT NULL,
    device_id         TEXT,
    rule_id           TEXT NOT NULL,
    condition_key     TEXT NOT NULL,
    severity          TEXT NOT NULL,
    title             TEXT NOT NULL,
    detail            TEXT NOT NULL,
    state             TEXT NOT NULL,
    level             INTEGER NOT NULL DEFAULT 0,
    raised_at         BIGINT NOT NULL,
    repeat_count      INTEGER NOT NULL DEFAULT 0,
    acked_at          BIGINT,
    acked_by          TEXT,
    ack_via           TEXT,
    resolved_at       BIGINT,
    resolved_by       TEXT,
    disposition       TEXT,
    resolution_note   TEXT,
    level_deadline_at BIGINT,
    renotify_at       BIGINT,
    overdue_at        BIGINT,
    overdue_notified  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO alarms_new (id, household_id, village_id, town_id, device_id, rule_id, condition_key, severity, title, detail, state, level, raised_at, repeat_count, acked_at, acked_by, ack_via, resolved_at, resolved_by, disposition, resolution_note, level_deadline_at, renotify_at, overdue_at, overdue_notified)
    SELECT id, household_id, village_id, town_id, device_id, rule_id, condition_key, severity, title, detail, state, level, raised_at, repeat_count, acked_at, acked_by, ack_via, resolved_at, resolved_by, disposition, resolution_note, level_deadline_at, renotify_at, overdue_at, overdue_notified FROM alarms;
DROP TABLE alarms;
ALTER TABLE alarms_new RENAME TO alarms;
PRAGMA defer_foreign_keys = OFF;

-- One open alarm per condition per household, or per village for grouped incidents.
CREATE UNIQUE INDEX alarms_open_condition ON alarms(COALESCE(household_id, 'village:' || village_id), condition_key) WHERE state <> 'resolved';
CREATE INDEX alarms_village_state ON alarms(village_id, state);
CREATE INDEX alarms_town_state ON alarms(town_id, state);
CREATE INDEX alarms_household ON alarms(household_id, state);
CREATE INDEX alarms_level_deadline ON alarms(level_deadline_at) WHERE level_deadline_at IS NOT NULL;
CREATE INDEX alarms_renotify ON alarms(renotify_at) WHERE renotify_at IS NOT NULL;
CREATE INDEX alarms_overdue ON alarms(overdue_at) WHERE overdue_notified = 0 AND state <> 'resolved';

-- Carer visits: checked in and out by a device (NFC tag at the door, visit button) or on
-- the board. The bureau requires at least three a week per elder living alone.
CREATE TABLE visits (
    id           INTEGER PRIMARY KEY,
    household_id TEXT NOT NULL REFERENCES households(id),
    -- the carer's tag or staff id, as reported; may be empty
    carer        TEXT NOT NULL DEFAULT '',
    -- 'device:<id>' or the contact id of who checked in on the board
    source       TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX visits_household_started ON visits(household_id, started_at);
CREATE INDEX visits_started ON visits(started_at);

-- Away / hospital / holiday modes as set (the rule engine's state is the working copy;
-- this is the record of who set what, and what the board shows).
CREATE TABLE household_modes (
    id           INTEGER PRIMARY KEY,
    household_id TEXT NOT NULL REFERENCES households(id),
    kind         TEXT NOT NULL,          -- away | hospital | holiday
    since        BIGINT NOT NULL,
    until        BIGINT NOT NULL,
    set_by       TEXT NOT NULL,          -- contact id, or 'device:<id>' for the leaving-home button
    ended_at     BIGINT,
    ended_by     TEXT
);
CREATE INDEX household_modes_household ON household_modes(household_id, since);
