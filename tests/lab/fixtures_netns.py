"""Lab fixtures: netns (filled in by the module's owner)."""
