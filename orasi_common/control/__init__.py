"""The control plane on etcd (ARCHITECTURE §7): the registration record format, registries and
elections. Imports no service; the services reach it through the ``etcd`` extension."""

from orasi_common.control.registration import (
    Endpoints,
    Key,
    MalformedRecord,
    Record,
    decode,
    encode,
    key_of,
    make_record,
    parse_key,
    prefix,
)

__all__ = [
    "Endpoints",
    "Key",
    "MalformedRecord",
    "Record",
    "decode",
    "encode",
    "key_of",
    "make_record",
    "parse_key",
    "prefix",
]
