"""TCP and unix-socket connects (checks.connect): the facts, on loopback."""

import socket
from pathlib import Path

from checks.connect import ConnectState, connect_tcp, connect_unix


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


async def test_a_unix_socket_path_without_a_file(tmp_path: Path) -> None:
    missing = await connect_unix(str(tmp_path / "gone.sock"), 2.0)
    assert missing.state is ConnectState.MISSING and missing.error == "no such socket file"
