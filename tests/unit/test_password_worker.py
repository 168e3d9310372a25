"""Passwords through the real hash worker processes (HashPool), as the server checks them."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from fastagi_spy.net.hashworker import HashPool
from fastagi_spy.store.pins import PinHasher

PEPPER = b"unit-test-pepper-0123456789"


@pytest_twisted.ensureDeferred
async def test_the_pool_checks_passwords_off_the_reactor() -> None:
    """kind="password" checks a password; a PIN check of the same text against the same
    hash fails, so a password can never be typed as a PIN nor a PIN used as a password."""
    hasher = PinHasher.cheap(PEPPER)
    stored = hasher.hash_password("9001", "right-password")
    pin = hasher.hash_pin("9001", "12345678")
    pool = HashPool(reactor, PEPPER, "cheap", timeout=30, size=1)
    await pool.start()
    try:
        assert await pool.verify("http:127.0.0.1", "9001", "right-password", stored,
                                 "password") is True
        assert await pool.verify("http:127.0.0.1", "9001", "wrong-password", stored,
                                 "password") is False
        assert await pool.verify("http:127.0.0.1", "9002", "right-password", None,
                                 "password") is False
        assert await pool.verify("PJSIP/1", "9001", "right-password", stored) is False
        assert await pool.verify("http:127.0.0.1", "9001", "12345678", pin, "password") is False
        assert await pool.verify("PJSIP/1", "9001", "12345678", pin) is True
    finally:
        pool.stop()
