import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from p2prpc import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union
from typing import Any as _Any

DESCRIPTOR: _descriptor.FileDescriptor

class ChatMessage(_message.Message):
    __slots__ = ("author", "text", "sent_at")
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    author: str
    text: str
    sent_at: _timestamp_pb2.Timestamp
    def __init__(
        self,
        author: _Optional[str] = ...,
        text: _Optional[str] = ...,
        sent_at: _Optional[
            _Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping[str, _Any]]
        ] = ...,
    ) -> None: ...

class Presence(_message.Message):
    __slots__ = ("author", "online")
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    author: str
    online: bool
    def __init__(self, author: _Optional[str] = ..., online: _Optional[bool] = ...) -> None: ...
