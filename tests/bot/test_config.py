"""bot.config's settings as every command reads them: `.env` and the environment, one line
for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from badgateway.bot.config import ConfigError, QueueTuning, load_config
from badgateway.checks.settings import SettingsError


def test_worker_wait_defaults_to_20_s_and_takes_fractions() -> None:
    assert load_config({}, dotenv_path=None).worker_wait_s == 20.0
    config = load_config({"BADGATEWAY_WORKER_WAIT_S": "2.5"}, dotenv_path=None)
    assert config.worker_wait_s == 2.5


@pytest.mark.parametrize("text", ["soon", "0", "-1", "1e3", "²"])
def test_a_worker_wait_that_is_not_seconds_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"BADGATEWAY_WORKER_WAIT_S": text}, dotenv_path=None)
    message = str(raised.value)
    assert message.startswith("BADGATEWAY_WORKER_WAIT_S must be") and "\n" not in message


def test_every_setting_is_read_from_dotenv_and_the_environment_wins(tmp_path: Path) -> None:
    """`.env` used to be read for some settings only: the sites file, the queue's timings and
    the alert policy set there were ignored by some commands."""
    sites = tmp_path / "sites.toml"
    sites.write_text('[[site]]\nname = "shop"\nurl = "http://shop.example/"\n')
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"BADGATEWAY_SITES={sites}\nBADGATEWAY_CA_FILE={ca}\n"
        "BADGATEWAY_QUEUE_HEARTBEAT_S=2\nBADGATEWAY_QUEUE_HOST_WAIT_S=7.5\n"
        "BADGATEWAY_ALERT_FAILURES=4\nBADGATEWAY_ALERT_STORM_THRESHOLD=0\n"
        "BADGATEWAY_SINK=badgateway.bot.assemble.worker:log_sink\n"
        "BADGATEWAY_WORKER_NAME=w1\nPORT=3001\n"
    )
    config = load_config({"PORT": "3002"}, dotenv_path=str(dotenv))
    assert config.port == 3002  # the environment wins
    assert (config.tuning.heartbeat_s, config.tuning.host_wait_s) == (2, 7.5)
    assert config.tuning.sweep_s == QueueTuning().sweep_s
    assert (config.alert_policy.failures_to_open, config.alert_policy.storm_threshold) == (4, 0)
    assert (config.sink, config.worker_name) == ("badgateway.bot.assemble.worker:log_sink", "w1")
    settings = config.load_sites()
    assert [s.name for s in settings.sites] == ["shop"] and settings.ca_file == str(ca)


@pytest.mark.parametrize(
    ("name", "text", "right"),
    [
        ("BADGATEWAY_QUEUE_HEARTBEAT_S", "abc", "a whole number greater than 0"),
        ("BADGATEWAY_QUEUE_HEARTBEAT_S", "1.5", "a whole number greater than 0"),
        ("BADGATEWAY_QUEUE_SWEEP_S", "-1", "a number greater than 0"),
        ("BADGATEWAY_QUEUE_JOB_MARGIN_S", "0", "a number greater than 0"),
        ("BADGATEWAY_QUEUE_RETRY_DELAY_S", "nan", "a number greater than 0"),
        ("BADGATEWAY_QUEUE_KEEP_S", "inf", "a whole number greater than 0"),
        ("BADGATEWAY_ALERT_FAILURES", "two", "a whole number greater than 0"),
        ("BADGATEWAY_ALERT_FLAP_WINDOW_S", "-900", "a number 0 or more"),
        ("BADGATEWAY_ALERT_STORM_HOLD_S", "inf", "a number 0 or more"),
        ("PORT", "99999", "a port number (1-65535)"),
        ("SLACK_BOT_TOKEN", "xoxp-user-token", "a bot token starting with xoxb-"),
        ("BADGATEWAY_SINK", "not a module", "module:factory"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_what_would_be_right(
    name: str, text: str, right: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({name: text}, dotenv_path=None)
    message = str(raised.value)
    assert message.startswith(f"{name} must be") and right in message, message
    assert "\n" not in message


def _sites(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sites.toml"
    path.write_text(text)
    return str(path)


def test_with_alerts_on_a_site_with_nowhere_to_post_its_alerts_stops_the_load(
    tmp_path: Path,
) -> None:
    """It used to lose its alerts with only a worker log line."""
    two = '[[site]]\nname = "a"\nurl = "http://a.example/"\n'
    two += '[[site]]\nname = "b"\nurl = "http://b.example/"\nchannel = "#b"\n'
    on = {"REDIS_URL": "redis://127.0.0.1:1/0", "SLACK_BOT_TOKEN": "xoxb-1"}
    config = load_config({**on, "BADGATEWAY_SITES": _sites(tmp_path, two)}, dotenv_path=None)
    with pytest.raises(ConfigError) as raised:
        config.load_sites(alerting=True)
    assert str(raised.value) == (
        f"sites file {config.sites_path!r}: site 'a' has no 'channel' and "
        "settings.default_channel is not set: "
        "its alerts would go nowhere (set one of them)"
    )
    assert len(config.load_sites().sites) == 2  # `diagnose` and `shell` post no alerts
    off = load_config({"BADGATEWAY_SITES": config.sites_path or ""}, dotenv_path=None)
    assert len(off.load_sites(alerting=True).sites) == 2  # no Redis: no alerts
    fixed = _sites(tmp_path, '[settings]\ndefault_channel = "#ops"\n' + two)
    assert len(config.load_sites(fixed, alerting=True).sites) == 2


def test_a_ca_file_setting_is_checked_without_a_sites_file_too(tmp_path: Path) -> None:
    config = load_config({"BADGATEWAY_CA_FILE": str(tmp_path / "ca.pem")}, dotenv_path=None)
    with pytest.raises(SettingsError) as raised:
        config.load_sites()
    assert str(raised.value) == (
        f"BADGATEWAY_CA_FILE: '{tmp_path / 'ca.pem'}': No such file or directory"
    )
    (tmp_path / "ca.pem").write_text("")
    assert config.load_sites().ca_file == str(tmp_path / "ca.pem")


def test_slacks_rate_scale_defaults_to_the_documented_limits_and_takes_fractions() -> None:
    assert load_config({}, dotenv_path=None).slack_rate_scale == 1.0
    config = load_config({"BADGATEWAY_SLACK_RATE_SCALE": "0.5"}, dotenv_path=None)
    assert config.slack_rate_scale == 0.5


@pytest.mark.parametrize("text", ["fast", "0", "-2", "1001", "1e3", "²"])
def test_a_rate_scale_that_is_not_a_multiple_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"BADGATEWAY_SLACK_RATE_SCALE": text}, dotenv_path=None)
    message = str(raised.value)
    assert message.startswith("BADGATEWAY_SLACK_RATE_SCALE must be") and "\n" not in message
