"""Lab fixtures: slack (filled in by the module's owner)."""
