"""fastagi-spy: supervisor listen, whisper and barge for Asterisk over FastAGI and AMI."""

__version__ = "0.1.0"
