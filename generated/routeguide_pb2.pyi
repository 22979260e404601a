import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union
from typing import Any as _Any

DESCRIPTOR: _descriptor.FileDescriptor

class Point(_message.Message):
    __slots__ = ("latitude", "longitude")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    latitude: int
    longitude: int
    def __init__(self, latitude: _Optional[int] = ..., longitude: _Optional[int] = ...) -> None: ...

class Rectangle(_message.Message):
    __slots__ = ("lo", "hi")
    LO_FIELD_NUMBER: _ClassVar[int]
    HI_FIELD_NUMBER: _ClassVar[int]
    lo: Point
    hi: Point
    def __init__(
        self,
        lo: _Optional[_Union[Point, _Mapping[str, _Any]]] = ...,
        hi: _Optional[_Union[Point, _Mapping[str, _Any]]] = ...,
    ) -> None: ...

class Feature(_message.Message):
    __slots__ = ("name", "location")
    class Change(_message.Message):
        __slots__ = ("kind", "feature", "changed_at")
        class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            KIND_UNSPECIFIED: _ClassVar[Feature.Change.Kind]
            KIND_ADDED: _ClassVar[Feature.Change.Kind]
            KIND_RENAMED: _ClassVar[Feature.Change.Kind]
            KIND_REMOVED: _ClassVar[Feature.Change.Kind]

        KIND_UNSPECIFIED: Feature.Change.Kind
        KIND_ADDED: Feature.Change.Kind
        KIND_RENAMED: Feature.Change.Kind
        KIND_REMOVED: Feature.Change.Kind
        KIND_FIELD_NUMBER: _ClassVar[int]
        FEATURE_FIELD_NUMBER: _ClassVar[int]
        CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
        kind: Feature.Change.Kind
        feature: Feature
        changed_at: _timestamp_pb2.Timestamp
        def __init__(
            self,
            kind: _Optional[_Union[Feature.Change.Kind, str]] = ...,
            feature: _Optional[_Union[Feature, _Mapping[str, _Any]]] = ...,
            changed_at: _Optional[
                _Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping[str, _Any]]
            ] = ...,
        ) -> None: ...

    NAME_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    location: Point
    def __init__(
        self,
        name: _Optional[str] = ...,
        location: _Optional[_Union[Point, _Mapping[str, _Any]]] = ...,
    ) -> None: ...

class RouteNote(_message.Message):
    __slots__ = ("location", "message", "sent_at")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    location: Point
    message: str
    sent_at: _timestamp_pb2.Timestamp
    def __init__(
        self,
        location: _Optional[_Union[Point, _Mapping[str, _Any]]] = ...,
        message: _Optional[str] = ...,
        sent_at: _Optional[
            _Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping[str, _Any]]
        ] = ...,
    ) -> None: ...

class RouteSummary(_message.Message):
    __slots__ = ("point_count", "feature_count", "distance", "elapsed_time")
    POINT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FEATURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_TIME_FIELD_NUMBER: _ClassVar[int]
    point_count: int
    feature_count: int
    distance: int
    elapsed_time: _duration_pb2.Duration
    def __init__(
        self,
        point_count: _Optional[int] = ...,
        feature_count: _Optional[int] = ...,
        distance: _Optional[int] = ...,
        elapsed_time: _Optional[
            _Union[datetime.timedelta, _duration_pb2.Duration, _Mapping[str, _Any]]
        ] = ...,
    ) -> None: ...
