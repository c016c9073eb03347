"""Lab fixtures: proxies (filled in by the module's owner)."""
