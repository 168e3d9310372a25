"""Asterisk device and channel names that are safe inside a dialplan application argument.

ChanSpy (like every application) gets its argument through Asterisk's argument splitter
(``ast_app_separate_args`` in main/app.c): ',' separates arguments (older releases also took
'|'), '"' quotes, '\\' escapes, and '(' ')' '[' ']' nest, so "PJSIP/1001,B" or
"PJSIP/1001(x)" would add options. A '$' can start a variable substitution. So a name may
hold none of those, no space, no control and no non-ASCII character.

One character set serves the config's devices and the channels we hand to ChanSpy, so every
device the config accepts has channels ChanSpy can be given: its channels are the device
plus "-<sequence>" (and ";1" / ";2" for Local channels). The lengths leave room for that
suffix. ChanSpy's own special spec "all" has no "/", so no device can be mistaken for it.
"""

from __future__ import annotations

import re

# Inside a device's resource: "1001", "1001@agents" (Local), "+4930123" (E.164), "trunk-a".
_RESOURCE_CHARS = "A-Za-z0-9@_.+-"

# "TECH/resource", e.g. "PJSIP/1001" or "Local/1001@agents". \A and \Z: "$" would also match
# before a trailing newline.
DEVICE_NAME = re.compile(rf"\A[A-Za-z0-9]{{1,16}}/[{_RESOURCE_CHARS}]{{1,72}}\Z")

# A channel name such as "PJSIP/1001-0000002a" or "Local/1001@agents-0000001b;2", or a
# uniqueid such as "1700000000.42" (ChanSpy's u option takes either).
CHANNEL_NAME = re.compile(rf"\A[/;{_RESOURCE_CHARS}]{{1,100}}\Z")
