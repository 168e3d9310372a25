"""One error hierarchy for both wire protocols (h11's shape)."""


class ProtocolError(Exception):
    """Something broke the FastAGI or AMI wire rules."""


class LocalProtocolError(ProtocolError):
    """We tried to send something illegal (e.g. CR or LF inside a value)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot parse, or too much of it."""
