"""Who heard whom: a Goertzel tone detector over the handsets' MixMonitor recordings."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path


def tone_shares(path: Path, hz: float, window_s: float = 0.1) -> list[float]:
    """For each window, the share of the window's energy at ``hz`` (0..1)."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1, "expected 16-bit mono"
        raw = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    n = int(rate * window_s)
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    shares = []
    for start in range(0, len(samples) - n + 1, n):
        window = samples[start:start + n]
        s1 = s2 = 0.0
        energy = 0.0
        for x in window:
            s0 = x + coeff * s1 - s2
            s2, s1 = s1, s0
            energy += x * x
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        # A pure sine of amplitude A gives power (A*n/2)^2 and energy A^2*n/2: ratio n/2.
        shares.append(0.0 if energy == 0 else min(1.0, power / (energy * n / 2)))
    return shares


def heard(path: Path, hz: float) -> float:
    """How much of the recording carried the tone: the fraction of windows where it held
    at least 10% of the energy (a heard tone scores well above 0.3; an unheard one 0)."""
    shares = tone_shares(path, hz)
    if not shares:
        return 0.0
    return sum(1 for s in shares if s >= 0.1) / len(shares)
