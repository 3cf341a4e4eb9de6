"""Everything kept in Redis: key schema, catalog cursor, locks, blob single-flight, run state."""
