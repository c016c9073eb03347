"""Automatic alerts: sites probed on a schedule, alert webhooks, one Slack thread per incident.

``monitor`` probes the configured sites from the workers, ``webhooks`` takes Alertmanager's
and a small generic JSON webhook, ``incidents`` keeps one incident per site in Redis and
moves it (open, recovered, resolved), ``storm`` groups many sites failing at once into one
alert, and ``notifier`` writes the alert messages to Slack. docs/alerts.md is the user guide.
"""
