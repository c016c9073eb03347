"""Lab fixtures: dns (filled in by the module's owner)."""
