"""bot.config's settings as `serve` and the workers read them (the worker wait, the rate scale)."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_config


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
