#!/usr/bin/env python3
"""Independent CARP HMAC vectors for carp-user/src/wire/hmac.rs tests.

Written from PROTOCOL.md's description only (stdlib hmac/hashlib), not from
our Rust code: HMAC-SHA1, key = passphrase zero-padded to 20 bytes, message =
version 2, type 1, vhid, IPv4 addresses sorted ascending (duplicates once),
IPv6 addresses sorted by bytes (link-local ones left out, or included with
bytes 2..4 zeroed), then the counter as 8 big-endian bytes.
"""
import hashlib
import hmac
import ipaddress
import struct


def digest(passphrase, vhid, addresses, counter, with_link_local=False):
    key = passphrase.encode().ljust(20, b"\0")
    v4 = sorted({ipaddress.IPv4Address(a).packed for a in addresses if ":" not in a})
    v6 = set()
    for a in addresses:
        if ":" not in a:
            continue
        packed = bytearray(ipaddress.IPv6Address(a).packed)
        if ipaddress.IPv6Address(a).is_link_local:
            if not with_link_local:
                continue
            packed[2:4] = b"\0\0"
        v6.add(bytes(packed))
    message = bytes([2, 1, vhid]) + b"".join(v4) + b"".join(sorted(v6))
    message += struct.pack(">Q", counter)
    return hmac.new(key, message, hashlib.sha1).hexdigest()


CASES = [
    ("ONE_V4", "secret", 1, ["10.0.1.1"], 1, False),
    ("UNSORTED_V4", "lab-secret", 7, ["192.0.2.20", "10.0.0.1", "192.0.2.3"], 0x8000000000000001, False),
    ("MIXED", "pass19bytes-exactly", 255, ["2001:db8::2", "192.0.2.1", "2001:db8::1"], 0x0123456789ABCDEF, False),
    ("LINK_LOCAL_LEFT_OUT", "x", 9, ["192.0.2.1", "fe80::1", "2001:db8::1"], 42, False),
    ("LINK_LOCAL_INCLUDED", "x", 9, ["192.0.2.1", "fe80::1", "2001:db8::1"], 42, True),
    ("EMPTY_PASS", "", 3, ["198.51.100.7"], 0xFFFFFFFFFFFFFFFF, False),
]

for name, passphrase, vhid, addresses, counter, ll in CASES:
    print(f"{name}: {digest(passphrase, vhid, addresses, counter, ll)}")
