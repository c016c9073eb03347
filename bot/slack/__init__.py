"""The Slack app: `/502` in a channel, results step by step in one thread."""
