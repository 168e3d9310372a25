"""sd_notify: the datagram reaches a real unix socket, by path and in the abstract namespace."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastagi_spy import sdnotify


@pytest.fixture()
def abstract() -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"fastagi-spy-test-{os.getpid()}"
    sock.bind("\0" + name)
    yield sock, "@" + name
    sock.close()


def test_ready_reaches_an_abstract_socket(abstract: tuple[socket.socket, str]) -> None:
    sock, name = abstract
    assert sdnotify.notify(sdnotify.READY, {"NOTIFY_SOCKET": name})
    assert sock.recv(4096) == b"READY=1"


def test_reloading_carries_the_monotonic_time(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert sdnotify.notify(sdnotify.reloading(), {"NOTIFY_SOCKET": path})
        lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0


def test_without_systemd_nothing_is_sent() -> None:
    assert not sdnotify.notify(sdnotify.READY, {})


def test_a_bad_address_or_a_missing_socket_is_logged_not_raised(tmp_path: Path) -> None:
    assert not sdnotify.notify(sdnotify.READY, {"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not sdnotify.notify(sdnotify.READY, {"NOTIFY_SOCKET": str(tmp_path / "gone")})
