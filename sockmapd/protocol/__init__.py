"""Wire protocol: netstring framing and socketmap requests and replies, without I/O."""

from sockmapd.protocol.netstring import (
    FrameTooLargeError,
    LengthHeaderError,
    MissingTerminatorError,
    NetstringDecoder,
    ProtocolError,
    encode_netstring,
)
from sockmapd.protocol.socketmap import (
    NOTFOUND_FRAME,
    NOTFOUND_REPLY,
    MalformedRequest,
    Reply,
    ReplyError,
    ReplyTooLargeError,
    Request,
    Status,
    decode_frame,
    encode_reply,
    frame_payload_size,
    frame_status,
    parse_reply,
    parse_request,
)

__all__ = [
    "NOTFOUND_FRAME",
    "NOTFOUND_REPLY",
    "FrameTooLargeError",
    "LengthHeaderError",
    "MalformedRequest",
    "MissingTerminatorError",
    "NetstringDecoder",
    "ProtocolError",
    "Reply",
    "ReplyError",
    "ReplyTooLargeError",
    "Request",
    "Status",
    "decode_frame",
    "encode_netstring",
    "encode_reply",
    "frame_payload_size",
    "frame_status",
    "parse_reply",
    "parse_request",
]
