"""Each process of the bot put together from its configuration, in one module per process.

``web`` (`badgateway serve`: the Slack app, the alert webhooks and alert commands), ``worker``
(`badgateway worker`: queue jobs, the Slack sink, site monitoring) and ``terminal`` (the
commands that answer in this terminal: diagnose, demo, shell, status), and ``check_config``
(`badgateway check-config`: the settings and what they point at). Only these modules
import across the features (bot.slack, bot.alerts, bot.queue); the features never import here.
"""
