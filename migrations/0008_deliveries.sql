-- Notifications beyond the board: every SMS, call and webhook post is a delivery row,
-- created in the same transaction as the `notified` step that asked for it (a restart
-- loses none), and every try is an attempt row (who, what, when, provider id, status,
-- error): the record that response KPIs and audits read.

-- How a contact wants to be reached, per severity, in order (the next is tried when one
-- fails): e.g. 'critical=voice,sms;warning=sms;info='. NULL: the default
-- (critical: voice then SMS; warning: SMS; info: the board only). Language of messages
-- and calls: 'zh-CN' (NULL) or 'en'.
ALTER TABLE contacts ADD COLUMN channels TEXT;
ALTER TABLE contacts ADD COLUMN language TEXT;

CREATE TABLE deliveries (
    -- also the idempotency key: webhook receivers see it in every post
    id              TEXT PRIMARY KEY,
    alarm_id        TEXT NOT NULL REFERENCES alarms(id),
    -- the timeline step (`notified`) that asked for this delivery
    step_seq        INTEGER NOT NULL,
    contact_id      TEXT NOT NULL,
    channel         TEXT NOT NULL,          -- sms | voice | webhook
    -- position of `channel` in the contact's list for the alarm's severity
    channel_index   INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL,          -- pending | sending | sent | failed | cancelled
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    provider_id     TEXT,                   -- Twilio SID, or the webhook's answer id
    status          TEXT,                   -- provider status: queued, delivered, no-answer …
    error           TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (alarm_id, step_seq, contact_id, channel)
);
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
CREATE INDEX deliveries_alarm ON deliveries(alarm_id);
CREATE INDEX deliveries_provider ON deliveries(provider_id);

CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries(id),
    attempt     INTEGER NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT NOT NULL,   -- sending | sent | retry | failed | interrupted
    provider_id TEXT,
    status      TEXT,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
