-- The monthly list reads the month's public notices: only supervision steps, by when they fired.
CREATE INDEX IF NOT EXISTS firings_noticed ON firings (fired_at) WHERE level = 'supervision' AND fired_at IS NOT NULL;
