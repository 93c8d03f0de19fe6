-- Rules may cap how far an alarm escalates (`escalate_to` in the rules file): a missed
-- daily check-in goes to the family and the village, never to the district.
-- NULL: escalate up to the district as before.
ALTER TABLE alarms ADD COLUMN max_level INTEGER;
