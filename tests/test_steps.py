"""The step registry (checks.steps): what a step declares about itself."""

from checks.steps import ANYWHERE, all_steps, step_named


def test_every_step_has_a_distinct_name_and_order() -> None:
    steps = all_steps()
    assert len({s.name for s in steps}) == len(steps)
    assert [s.order for s in steps] == sorted({s.order for s in steps})


def test_the_logs_step_declares_the_queues_of_its_parts() -> None:
    logs = step_named("logs")
    assert logs is not None and logs.parts is not None
    assert logs.parts.queue_at("web-1") == "logs@web-1"
    assert logs.parts.queue_at(ANYWHERE) is None  # any worker's queue
