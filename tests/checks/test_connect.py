"""TCP and unix-socket connects (checks.connect): the facts, on loopback."""

import asyncio
import socket
import time
from pathlib import Path

from badgateway.checks.connect import ConnectState, connect_tcp, connect_unix


async def test_an_open_port_and_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        opened = await connect_tcp("127.0.0.1", port, 2.0)
    assert opened.state is ConnectState.OPEN and opened.error is None
    refused = await connect_tcp("127.0.0.1", port, 2.0)  # the listener is closed now
    assert refused.state is ConnectState.REFUSED
    assert refused.to_dict() == {
        "state": "refused",
        "ms": refused.ms,
        "error": "connection refused",
    }


async def test_a_busy_event_loop_does_not_turn_an_answer_into_no_answer() -> None:
    # A storm's 200 diagnoses in one process keep the loop busy past a probe's timeout; the
    # kernel's answer (accepted, refused) was in all along and is what the connect reports —
    # "no answer" would read as a firewall dropping packets.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        results = []
        for _ in range(2):  # open, then refused (the listener closed below)
            connecting = asyncio.create_task(connect_tcp("127.0.0.1", port, 0.2))
            await asyncio.sleep(0)  # the connect is under way
            time.sleep(0.5)  # noqa: ASYNC251 -- the loop busy with other work, on purpose
            results.append((await connecting).state)
            listener.close()
    assert results == [ConnectState.OPEN, ConnectState.REFUSED]


async def test_a_unix_socket_path_without_a_file(tmp_path: Path) -> None:
    missing = await connect_unix(str(tmp_path / "gone.sock"), 2.0)
    assert missing.state is ConnectState.MISSING and missing.error == "no such socket file"
