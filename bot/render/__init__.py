"""Renderers: the same findings and verdict shown in Slack blocks, a terminal, or JSON."""
