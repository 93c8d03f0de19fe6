-- Response states beyond "acknowledged" (issue 6): who took the alarm is seen
-- (acknowledged) → on the way (with an ETA) → on site → resolved. `state` keeps the
-- closed loop (raised → notified → acknowledged → resolved); `response` refines an
-- acknowledged alarm. `on_site_deadline_at`: when an acknowledged alarm with nobody on
-- site re-escalates (policy `on_site_within_secs`).
ALTER TABLE alarms ADD COLUMN response TEXT;              -- seen | en_route | on_site
ALTER TABLE alarms ADD COLUMN eta_at BIGINT;
ALTER TABLE alarms ADD COLUMN on_site_at BIGINT;
ALTER TABLE alarms ADD COLUMN on_site_deadline_at BIGINT;
