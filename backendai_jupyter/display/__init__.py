"""Jupyter output mapping shared by the proxy kernel and the magics (kernel-independent)."""

from .outputs import (
    Frame,
    FrameDecoder,
    Message,
    console_to_messages,
    encode_frame,
    frame_to_message,
    parse_traceback_text,
)

__all__ = [
    "Frame",
    "FrameDecoder",
    "Message",
    "console_to_messages",
    "encode_frame",
    "frame_to_message",
    "parse_traceback_text",
]
