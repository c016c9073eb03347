"""badgateway's bot: the Slack app, the job queue and workers, alerts, and the CLI."""
