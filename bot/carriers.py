"""Choose how diagnoses travel: in this process, or through the Redis queue to workers."""

from __future__ import annotations

from bot.config import BotConfig
from bot.pipeline import Carrier, InProcessCarrier, ResultSink
from checks.settings import Settings


def build_carrier(config: BotConfig, settings: Settings, sink: ResultSink) -> Carrier:
    """The queue (``REDIS_URL`` set) or in-process asyncio tasks (unset).

    With the queue, ``sink`` is not used here: the workers post with their own sink
    (``bot.slack.sink.build_sink``), sharing this process' state through Redis.
    """
    if config.redis_url:
        from bot.queue.carrier import QueueCarrier  # needs Redis; imported only when used

        return QueueCarrier(config, settings)
    return InProcessCarrier(settings, sink)
