"""The MLflow server's event loop in the team stack: kept-alive connections get TCP_NODELAY.

uvicorn's multi-worker mode binds the listening socket itself (``Config.bind_socket``) with
``proto`` 0 and hands it to each worker; connections accepted from it keep Nagle's
algorithm on under asyncio's own loop (it only sets TCP_NODELAY when ``proto`` is
IPPROTO_TCP), so every response after the first on a kept-alive connection waited ~40 ms
for the client's delayed ACK. The stack runs the server's workers on uvloop, which sets
TCP_NODELAY on every accepted TCP connection. This test checks that premise with the real
libraries; ``tests/test_stack.py`` checks that the running server's workers have uvloop
loaded."""

from __future__ import annotations

import asyncio
import socket

import pytest

from modelrecovery import stack


async def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of the server side of one connection accepted from ``listener``."""
    loop = asyncio.get_running_loop()
    accepted = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await loop.create_server(Probe, sock=listener)
    client = socket.create_connection(listener.getsockname()[:2])
    try:
        return await asyncio.wait_for(accepted, 10)
    finally:
        client.close()
        server.close()
        await server.wait_closed()


def _uvicorn_listener() -> socket.socket:
    """The listening socket exactly as uvicorn's multi-worker supervisor binds it."""
    import uvicorn

    config = uvicorn.Config("nothing:app", host="127.0.0.1", port=0, log_level="error")
    return config.bind_socket()


def test_uvloop_sets_nodelay_on_connections_from_uvicorns_listener():
    uvloop = pytest.importorskip("uvloop", reason="uvloop does not exist on Windows")
    assert uvloop.run(_accepted_nodelay(_uvicorn_listener())) == 1


def test_stack_settings_name_the_variable_of_a_bad_value(monkeypatch, capsys):
    monkeypatch.setenv("MODELRECOVERY_STACK_MLFLOW_LOOP", "tokio")
    with pytest.raises(stack.StackError, match="MODELRECOVERY_STACK_MLFLOW_LOOP .*'tokio'"):
        stack.StackSettings.from_env()
    assert stack.main(["status"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stack status: error: MODELRECOVERY_STACK_MLFLOW_LOOP must be one of")
    assert "\n" not in err
    monkeypatch.setenv("MODELRECOVERY_STACK_MLFLOW_LOOP", "asyncio")
    assert stack.StackSettings.from_env().mlflow_loop == "asyncio"
    monkeypatch.setenv("MODELRECOVERY_STACK_MLFLOW_PORT", "5OOO")
    with pytest.raises(stack.StackError, match="MODELRECOVERY_STACK_MLFLOW_PORT must be an int"):
        stack.StackSettings.from_env()


def test_settings_on_free_ports_are_free_and_keep_other_fields(tmp_path):
    settings = stack.settings_on_free_ports(tmp_path / "stack", mlflow_loop="asyncio")
    ports = settings.ports()
    assert len(set(ports)) == len(ports) == 3 + 2 * len(settings.weed_ports())
    assert all(stack.port_free(p) for p in ports)
    assert settings.mlflow_loop == "asyncio" and settings.root == tmp_path / "stack"
    with socket.socket() as taken:  # a port in use is never handed out
        taken.bind(("127.0.0.1", settings.mlflow_port))
        assert not stack.port_free(settings.mlflow_port)
