-- "Verify with the elder first" (issue 6): for some rules (inactivity, a fall detector)
-- the hub first calls the elder's own phone — "press 1 if you are all right" — and tells
-- the contacts only if the elder does not confirm by `verify_until`.
ALTER TABLE alarms ADD COLUMN verify_until BIGINT;

-- Repeats at the current level ("call again every N minutes until someone answers"),
-- bounded by the policy's `max_repeats`; reset when the alarm climbs.
ALTER TABLE alarms ADD COLUMN repeats_at_level INTEGER NOT NULL DEFAULT 0;
