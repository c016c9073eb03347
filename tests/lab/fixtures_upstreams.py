"""Lab fixtures: upstreams (filled in by the module's owner)."""
