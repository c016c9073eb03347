"""Lab fixtures: redis (filled in by the module's owner)."""
