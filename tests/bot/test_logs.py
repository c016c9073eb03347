"""Log lines: JSON off a terminal, the readable line on one, and never a secret in either —
whatever logger emits it (slack_sdk logs its requests at DEBUG)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from badgateway.bot import logs
from badgateway.bot.config import ConfigError, load_log_settings
from tests.lab.bot_processes import ALERTS_TOKEN, BOT_TOKEN, BotProcesses
from tests.lab.fixtures_slack import SIGNING_SECRET, SlackStandIn

APP_TOKEN = "xapp-1-A0BGW0001-2222222222-0ps0app0token"
REDIS_PASSWORD = "s3cret-redis-pw"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure() replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _logged(log_format: str | None, emit: str = "", *args: object, **extra: object) -> str:
    out = io.StringIO()
    logs.configure(logging.DEBUG, log_format, [SIGNING_SECRET, ALERTS_TOKEN], stream=out)
    logging.getLogger("some.library").debug(emit, *args, extra=extra or None)
    return out.getvalue()


@pytest.mark.parametrize(
    "line",
    [
        f"token={BOT_TOKEN}&channel=C1",  # a form body as slack_sdk sends it
        f"headers: {{'Authorization': 'Bearer {BOT_TOKEN}'}}",
        f"Authorization: Bearer {ALERTS_TOKEN}",
        f"connecting to redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        f"redis://default:{REDIS_PASSWORD}@redis:6379",
        f"apps.connections.open with {APP_TOKEN}",
        f"signature base computed with {SIGNING_SECRET}",
        f'{{"client_secret": "{REDIS_PASSWORD}"}}',
        f"alerts webhook got token {ALERTS_TOKEN}",
    ],
)
def test_no_secret_survives_in_either_format(line: str, root_logging: None) -> None:
    secrets = (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, ALERTS_TOKEN, REDIS_PASSWORD)
    for log_format in ("json", "text"):
        text = _logged(log_format, "%s", line)
        assert logs.REDACTED in text
        assert not [s for s in secrets if s in text], text


def test_secrets_in_tracebacks_and_fields_are_redacted(root_logging: None) -> None:
    out = io.StringIO()
    logs.configure(logging.INFO, "json", [], stream=out)
    try:
        raise RuntimeError(f"could not post with {BOT_TOKEN}")
    except RuntimeError:
        with logs.fields(job_id="d1:dns", url=f"redis://:{REDIS_PASSWORD}@h:1"):
            logging.getLogger("bot.x").exception("posting failed", extra={"step": "dns"})
    doc = json.loads(out.getvalue())
    assert BOT_TOKEN not in out.getvalue() and REDIS_PASSWORD not in out.getvalue()
    assert doc["level"] == "ERROR" and doc["logger"] == "bot.x"
    assert doc["message"] == "posting failed"
    assert doc["job_id"] == "d1:dns" and doc["step"] == "dns"
    assert "RuntimeError: could not post with xoxb-[redacted]" in doc["exc"]


def test_json_off_a_terminal_text_on_one_or_as_set(root_logging: None) -> None:
    line = _logged(None, "hello %s", "world", site="shop")  # StringIO: not a terminal
    doc = json.loads(line)
    assert {k: doc[k] for k in ("level", "logger", "message", "site")} == {
        "level": "DEBUG",
        "logger": "some.library",
        "message": "hello world",
        "site": "shop",
    }
    assert doc["time"].endswith("+00:00")
    text = _logged("text", "hello %s", "world")
    assert text.rstrip().endswith("DEBUG some.library: hello world")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    logs.configure(logging.INFO, None, stream=out)
    logging.getLogger("some.app").info("on a terminal")
    assert out.getvalue().rstrip().endswith("INFO some.app: on a terminal")


def test_log_settings() -> None:
    env = {
        "BADGATEWAY_LOG_FORMAT": "JSON",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
    }
    settings = load_log_settings(env, dotenv_path=None)
    assert settings.log_format == "json"
    assert set(settings.secrets) == {BOT_TOKEN, REDIS_PASSWORD}
    assert load_log_settings({}, dotenv_path=None).log_format is None
    with pytest.raises(ConfigError, match="BADGATEWAY_LOG_FORMAT must be json or text"):
        load_log_settings({"BADGATEWAY_LOG_FORMAT": "yaml"}, dotenv_path=None)


async def test_a_real_process_at_debug_logs_json_and_no_secret(
    slack_api: SlackStandIn, failing_site: str, tmp_path: Path
) -> None:
    bot = BotProcesses(slack_api, tmp_path, sites={"shop": failing_site})
    try:
        await bot.start_web("-v")  # DEBUG: slack_sdk, Bolt and aiohttp log their requests
        assert await bot.slash("shop") == 200
        await slack_api.wait_for(
            lambda: any(m.thread_ts for m in slack_api.messages if "Verdict" in str(m.blocks)),
            20,
            "the verdict in the thread",
        )
        # A client that puts the token in the URL: aiohttp's access log records the URL.
        status, _ = await bot.get(f"{bot.base}/healthz?token={ALERTS_TOKEN}")
        assert status == 200
    finally:
        bot.stop()
    lines = bot.lines("web")
    assert len(lines) > 20, bot.logs()  # DEBUG logging ran: there is something to check
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"slack_sdk.web.async_base_client", "badgateway.bot.assemble.web"} <= {
        d["logger"] for d in docs
    }
    access = [d["message"] for d in docs if d["logger"] == "aiohttp.access"]
    assert any("/healthz?token=[redacted]" in m for m in access), access
    for secret in (BOT_TOKEN, SIGNING_SECRET, ALERTS_TOKEN):
        assert not [line for line in lines if secret in line], secret
