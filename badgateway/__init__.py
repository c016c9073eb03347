"""badgateway: a Slack chat-ops bot that says why a gateway answers 502 Bad Gateway.

The one installed top-level package. Its two parts live in the repository's top folders:
``badgateway.bot`` is bot/ (the Slack app, queue, alerts, CLI) and ``badgateway.checks`` is
checks/ (the diagnosis engine). pyproject.toml maps them with ``package-dir`` when building;
in a source checkout badgateway/bot and badgateway/checks are links to those folders, so
``PYTHONPATH=<checkout>`` imports that checkout's code under the same names, ahead of any
editable install (its finder is consulted only after ``sys.path``).
"""
