-- Append-only audit log: who did what, when, from where, and whether it was allowed.
-- Ids only (contacts, alarms, households): never names, addresses or phone numbers.
CREATE TABLE audit_log (
    seq      INTEGER PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,          -- contact id, or 'anonymous'
    action   TEXT NOT NULL,          -- e.g. alarm.acknowledge, household.mode.set, rules.reload
    target   TEXT NOT NULL,          -- e.g. alarm:<id>, household:<id>, rules
    outcome  TEXT NOT NULL,          -- allowed | denied | failed
    source   TEXT,                   -- client address, when known
    detail   TEXT NOT NULL DEFAULT '{}'   -- JSON, ids only
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_actor ON audit_log(actor, at);
