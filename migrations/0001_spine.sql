-- Anxin spine schema. Written in the common subset of SQLite and PostgreSQL:
-- TEXT ids, BIGINT unix-millisecond timestamps, no AUTOINCREMENT-only features
-- except the timeline sequence (BIGINT identity in PostgreSQL, INTEGER PRIMARY KEY in SQLite).

CREATE TABLE towns (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL
);

CREATE TABLE villages (
    id          TEXT PRIMARY KEY,
    town_id     TEXT NOT NULL REFERENCES towns(id),
    name        TEXT NOT NULL
);
CREATE INDEX villages_town ON villages(town_id);

CREATE TABLE households (
    id          TEXT PRIMARY KEY,
    village_id  TEXT NOT NULL REFERENCES villages(id),
    address     TEXT NOT NULL
);
CREATE INDEX households_village ON households(village_id);

CREATE TABLE elders (
    id           TEXT PRIMARY KEY,
    household_id TEXT NOT NULL REFERENCES households(id),
    name         TEXT NOT NULL,
    phone        TEXT
);

CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    household_id TEXT NOT NULL REFERENCES households(id),
    kind         TEXT NOT NULL,
    vendor       TEXT NOT NULL DEFAULT '',
    -- argon2 PHC string of the device secret; the secret itself is never stored
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX devices_household ON devices(household_id);

-- Family members (scope_kind = 'household') and staff (village / town / district).
CREATE TABLE contacts (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    phone        TEXT,
    role         TEXT NOT NULL,          -- family | village | town | district
    scope_kind   TEXT NOT NULL,          -- household | village | town | district
    scope_id     TEXT NOT NULL,          -- id of that household/village/town; 'district' for the district
    priority     INTEGER NOT NULL DEFAULT 0,
    -- SHA-256 (hex) of the contact's API token; tokens are 256-bit random, so a fast hash is enough
    token_hash   TEXT UNIQUE,
    created_at   BIGINT NOT NULL
);
CREATE INDEX contacts_scope ON contacts(scope_kind, scope_id);

CREATE TABLE alarms (
    id                TEXT PRIMARY KEY,
    household_id      TEXT NOT NULL REFERENCES households(id),
    village_id        TEXT NOT NULL,
    town_id           TEXT NOT NULL,
    device_id         TEXT,
    rule_id           TEXT NOT NULL,
    condition_key     TEXT NOT NULL,
    severity          TEXT NOT NULL,      -- info | warning | critical
    title             TEXT NOT NULL,
    detail            TEXT NOT NULL,
    state             TEXT NOT NULL,      -- raised | notified | acknowledged | resolved
    level             INTEGER NOT NULL DEFAULT 0,  -- 0 family+village, 1 town, 2 district
    raised_at         BIGINT NOT NULL,
    repeat_count      INTEGER NOT NULL DEFAULT 0,
    acked_at          BIGINT,
    acked_by          TEXT,
    ack_via           TEXT,
    resolved_at       BIGINT,
    resolved_by       TEXT,
    disposition       TEXT,
    resolution_note   TEXT,
    -- escalation clock: when the current level's acknowledgement deadline passes
    level_deadline_at BIGINT,
    -- when the current level is notified again (critical alarms repeat until acknowledged)
    renotify_at       BIGINT,
    -- the second clock: unresolved after this instant => overdue, escalated to the district
    overdue_at        BIGINT,
    overdue_notified  INTEGER NOT NULL DEFAULT 0
);
-- One open alarm per condition per household: the dedup rule, enforced by the database.
CREATE UNIQUE INDEX alarms_open_condition ON alarms(household_id, condition_key) WHERE state <> 'resolved';
CREATE INDEX alarms_village_state ON alarms(village_id, state);
CREATE INDEX alarms_town_state ON alarms(town_id, state);
CREATE INDEX alarms_level_deadline ON alarms(level_deadline_at) WHERE level_deadline_at IS NOT NULL;
CREATE INDEX alarms_renotify ON alarms(renotify_at) WHERE renotify_at IS NOT NULL;
CREATE INDEX alarms_overdue ON alarms(overdue_at) WHERE overdue_notified = 0 AND state <> 'resolved';

-- Append-only timeline of every step of every alarm. seq is global and monotonic:
-- websocket clients resync with "everything after seq N".
CREATE TABLE alarm_timeline (
    seq        INTEGER PRIMARY KEY,
    alarm_id   TEXT NOT NULL REFERENCES alarms(id),
    at         BIGINT NOT NULL,
    step       TEXT NOT NULL,   -- raised | repeated | notified | escalated | overdue | acknowledged | resolved | cleared
    actor      TEXT,            -- contact id, 'hub' or 'device:<id>'
    detail     TEXT NOT NULL    -- JSON
);
CREATE INDEX alarm_timeline_alarm ON alarm_timeline(alarm_id, seq);

-- Critical events already committed, for de-duplication of device retries.
CREATE TABLE device_events (
    device_id   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    alarm_id    TEXT,
    received_at BIGINT NOT NULL,
    device_ts   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    PRIMARY KEY (device_id, event_id)
);

-- The rule engine's memory (timers, last activity), saved so a restart continues where it stopped.
CREATE TABLE rule_state (
    id       INTEGER PRIMARY KEY,
    state    TEXT NOT NULL,
    saved_at BIGINT NOT NULL
);
