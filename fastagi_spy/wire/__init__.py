"""Sans-IO FastAGI and AMI: bytes in, frozen events out, ``encode_*()`` bytes back.

Nothing here imports Twisted or the model; a test enforces it.
"""
