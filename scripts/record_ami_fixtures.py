"""Record raw AMI byte streams from the real Asterisk 22 sandbox into tests/fixtures/ami/.

Each scenario is played with plain AMI actions on one connection while a second connection
(the product's least-privilege account) records everything Asterisk sends it, banner and
login included, exactly as our client would see it. Run as root:

    python scripts/record_ami_fixtures.py [SCENARIO ...]
"""

from __future__ import annotations

import hashlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastagi_spy.sandbox import TESTER_SECRET, TESTER_USER, AsteriskSandbox  # noqa: E402

OUT = REPO / "tests" / "fixtures" / "ami"


class AMI:
    """A blocking AMI connection: enough to log in, send actions and record bytes."""

    def __init__(self, port: int, user: str, secret: str, record: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buffer = bytearray()
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.n = 0
        time.sleep(0.2)
        self.send("Challenge", AuthType="MD5")
        time.sleep(0.2)
        challenge = self.text().split("Challenge: ")[1].split("\r\n")[0]
        key = hashlib.md5((challenge + secret).encode(), usedforsecurity=False).hexdigest()
        self.send("Login", AuthType="MD5", Username=user, Key=key)
        time.sleep(0.3)
        if not record:
            with self.lock:
                self.buffer.clear()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            with self.lock:
                self.buffer += data
        self.closed = True

    def text(self) -> str:
        with self.lock:
            return self.buffer.decode("utf-8", "replace")

    def send(self, action: str, *pairs: tuple[str, str], **headers: str) -> None:
        self.n += 1
        lines = [f"Action: {action}", f"ActionID: rec-{self.n}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"{k}: {v}" for k, v in pairs]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def close(self) -> bytes:
        self.send("Logoff")
        time.sleep(0.3)
        self.sock.close()
        with self.lock:
            return bytes(self.buffer)


def originate(ami: AMI, channel: str, context: str, exten: str, caller: str = "",
              **variables: str) -> None:
    pairs = [("Variable", f"{k}={v}") for k, v in variables.items()]
    extra = {"CallerID": caller} if caller else {}
    ami.send("Originate", *pairs, Channel=channel, Context=context, Exten=exten, Priority="1",
             Async="true", **extra)


def channels(box: AsteriskSandbox) -> list[str]:
    out = box.cli("core show channels concise")
    return [line.split("!")[0] for line in out.splitlines() if "!" in line]


def find(box: AsteriskSandbox, prefix: str, suffix: str) -> str:
    for _ in range(50):
        for name in channels(box):
            if name.startswith(prefix) and name.endswith(suffix):
                return name
        time.sleep(0.1)
    raise RuntimeError(f"no channel {prefix}*{suffix}")


def hangup_all(box: AsteriskSandbox) -> None:
    box.cli("channel request hangup all")
    time.sleep(0.8)


def incoming_call_answered(box: AsteriskSandbox, drv: AMI) -> None:
    """Customer 5551234 calls agent 1001, who answers; after 2 s the customer hangs up."""
    originate(drv, "Local/1001@fsp-customers/n", "fsp-handsets", "customer", "ACME <5551234>")
    time.sleep(2)
    box.cli(f"channel request hangup {find(box, 'Local/1001@fsp-customers-', ';1')}")
    time.sleep(1)


def outgoing_call(box: AsteriskSandbox, drv: AMI) -> None:
    """Agent 1002's phone dials customer 5559876 (the agent's leg starts the call)."""
    originate(drv, "Local/1002@fsp-agents/n", "fsp-conf", "5559876", "Agent 1002 <1002>")
    time.sleep(0.5)
    # fsp-conf puts the "customer" in a room: the agent leg bridges with ConfBridge there.
    time.sleep(1.5)
    hangup_all(box)


def queue_call_paused_mid_call(box: AsteriskSandbox, drv: AMI) -> None:
    """Agent 1002 joins queue fsp-sales, answers a queue call, is paused mid-call, hangs up."""
    drv.send("QueueAdd", Queue="fsp-sales", Interface="Local/1002@fsp-agents/n",
             MemberName="1002")
    time.sleep(0.5)
    originate(drv, "Local/q@fsp-customers/n", "fsp-handsets", "customer", "Globex <5559876>")
    time.sleep(2)
    drv.send("QueuePause", Queue="fsp-sales", Interface="Local/1002@fsp-agents/n",
             Paused="true", Reason="coffee")
    time.sleep(1)
    hangup_all(box)
    drv.send("QueueRemove", Queue="fsp-sales", Interface="Local/1002@fsp-agents/n")
    time.sleep(0.5)


def confbridge_session(box: AsteriskSandbox, drv: AMI) -> None:
    """Agent 1003 sits in ConfBridge room 9600001 (VICIdial style); a customer joins it."""
    originate(drv, "Local/1003@fsp-agents/n", "fsp-handsets", "customer", "Agent 1003 <1003>",
              FSP_CONF="9600001")
    time.sleep(1)
    originate(drv, "Local/9600001@fsp-conf/n", "fsp-handsets", "customer", "ACME <5551234>")
    time.sleep(2)
    hangup_all(box)


def varset_session(box: AsteriskSandbox, drv: AMI) -> None:
    """The site's dialplan sets FASTAGI_SPY_SESSION=8600051 on agent 1001's leg."""
    originate(drv, "Local/1001@fsp-customers/n", "fsp-handsets", "customer", "ACME <5551234>",
              __FSP_SESSION="8600051")
    time.sleep(2)
    hangup_all(box)


def ringing_then_hangup(box: AsteriskSandbox, drv: AMI) -> None:
    """Agent 1001's phone rings; the customer hangs up before it is answered."""
    originate(drv, "Local/1001@fsp-customers/n", "fsp-handsets", "customer", "ACME <5551234>",
              FSP_RING_ONLY="yes")
    time.sleep(1.5)
    box.cli(f"channel request hangup {find(box, 'Local/1001@fsp-customers-', ';1')}")
    time.sleep(1)


def blind_transfer(box: AsteriskSandbox, drv: AMI) -> None:
    """Agent 1001 blind-transfers the customer to agent 1002."""
    originate(drv, "Local/1001@fsp-customers/n", "fsp-handsets", "customer", "ACME <5551234>")
    time.sleep(1.5)
    agent_leg = find(box, "Local/1001@fsp-agents-", ";1")
    drv.send("BlindTransfer", Channel=agent_leg, Context="fsp-customers", Exten="1002")
    time.sleep(2)
    hangup_all(box)


def agents_10_and_100(box: AsteriskSandbox, drv: AMI) -> None:
    """Agents 10 and 100 on calls at once (prefix-collision bait)."""
    originate(drv, "Local/10@fsp-customers/n", "fsp-handsets", "customer", "ACME <5551234>")
    originate(drv, "Local/100@fsp-customers/n", "fsp-handsets", "customer", "Globex <5559876>")
    time.sleep(2)
    hangup_all(box)


def dialer_call(box: AsteriskSandbox, drv: AMI) -> None:
    """A dialler calls customer 5551234 and sends the answered call into agent 1003's room."""
    originate(drv, "Local/1003@fsp-agents/n", "fsp-handsets", "customer", "Agent 1003 <1003>",
              FSP_CONF="9600001")
    time.sleep(1)
    # VICIdial's way: the caller id is the campaign's, its name the dialler's call id.
    originate(drv, "Local/5551234@fsp-dialer/n", "fsp-conf", "9600001",
              "V1121135220000012345 <3125550000>")
    time.sleep(2)
    hangup_all(box)


SCENARIOS: list[Callable[[AsteriskSandbox, AMI], None]] = [
    incoming_call_answered, outgoing_call, queue_call_paused_mid_call, confbridge_session,
    varset_session, ringing_then_hangup, blind_transfer, agents_10_and_100, dialer_call,
]


def main() -> None:
    """Record every scenario, or only those named on the command line."""
    wanted = set(sys.argv[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    box = AsteriskSandbox(name="fsp-record", teams={"1001": "team_sales"})
    box.start()
    try:
        for scenario in SCENARIOS:
            if wanted and scenario.__name__ not in wanted:
                continue
            recorder = AMI(box.ami_port, "fastagi-spy", "change-me-fastagi-spy", record=True)
            driver = AMI(box.ami_port, TESTER_USER, TESTER_SECRET)
            scenario(box, driver)
            time.sleep(0.5)
            driver.close()
            data = recorder.close()
            path = OUT / f"{scenario.__name__}.ami"
            path.write_bytes(data)
            print(f"{path.relative_to(REPO)}: {len(data)} bytes, "
                  f"{data.count(b'Event: ')} events — {scenario.__doc__}")
    finally:
        box.stop()


if __name__ == "__main__":
    main()
