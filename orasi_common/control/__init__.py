"""The control plane on etcd (ARCHITECTURE §7): the registration record format, the registries
services register in (etcd, or in-process), and leader elections. Imports no service; services
reach it through the ``etcd`` extension (``orasi_common.extensions.etcd``)."""

from orasi_common.control.election import Election, leader_key
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
from orasi_common.control.registry import LOCAL, Change, EtcdRegistry, InProcessRegistry, Registry

__all__ = [
    "LOCAL",
    "Change",
    "Election",
    "Endpoints",
    "EtcdRegistry",
    "InProcessRegistry",
    "Key",
    "MalformedRecord",
    "Record",
    "Registry",
    "decode",
    "encode",
    "key_of",
    "leader_key",
    "make_record",
    "parse_key",
    "prefix",
]
