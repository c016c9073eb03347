"""Automatic alerts: sites probed on a schedule, alert webhooks, one Slack thread per incident.

``monitor`` probes the configured sites from the workers, ``webhooks`` takes Alertmanager's
and a small generic JSON webhook, ``incidents`` keeps one incident per site in Redis and
moves it (open, recovered, resolved), ``posting`` posts them (alone, or many failing at once
grouped by ``storm``), ``messages`` says what the alert messages say and ``notifier`` sends
them, ``chat`` is what people do in an alert's thread and with `/502 mute`. docs/alerts.md
is the user guide.
"""
