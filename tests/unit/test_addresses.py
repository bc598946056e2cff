"""Listen address and database host parsing."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockmapd.config.addresses import (
    TcpAddress,
    UnixAddress,
    parse_host_port,
    parse_listen_address,
    parse_socket_host,
)


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("tcp://127.0.0.1:2224", TcpAddress("127.0.0.1", 2224), "tcp://127.0.0.1:2224"),
        ("tcp://0.0.0.0:1", TcpAddress("0.0.0.0", 1), "tcp://0.0.0.0:1"),
        ("tcp://[::1]:65535", TcpAddress("::1", 65535), "tcp://[::1]:65535"),
        ("tcp://[::]:2224", TcpAddress("::", 2224), "tcp://[::]:2224"),
        (
            "tcp://[2001:DB8:0:0::1]:25",
            TcpAddress("2001:db8::1", 25),
            "tcp://[2001:db8::1]:25",
        ),
        ("tcp://localhost:2224", TcpAddress("localhost", 2224), "tcp://localhost:2224"),
        (
            "tcp://Mail.Example.ORG:2224",
            TcpAddress("mail.example.org", 2224),
            "tcp://mail.example.org:2224",
        ),
        ("TCP://127.0.0.1:2224", TcpAddress("127.0.0.1", 2224), "tcp://127.0.0.1:2224"),
        ("tcp://127.0.0.1:02224", TcpAddress("127.0.0.1", 2224), "tcp://127.0.0.1:2224"),
        (
            "unix:///run/sockmapd/sockmapd.sock",
            UnixAddress("/run/sockmapd/sockmapd.sock"),
            "unix:///run/sockmapd/sockmapd.sock",
        ),
        ("unix:///x y", UnixAddress("/x y"), "unix:///x y"),
    ],
)
def test_parse_valid(text: str, expected: TcpAddress | UnixAddress, canonical: str) -> None:
    address = parse_listen_address(text)
    assert address == expected
    assert str(address) == canonical
    assert parse_listen_address(canonical) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected tcp://HOST:PORT"),
        ("127.0.0.1:2224", "expected tcp://HOST:PORT"),
        ("udp://127.0.0.1:2224", "expected tcp://HOST:PORT"),
        ("inet:127.0.0.1:2224", "expected tcp://HOST:PORT"),
        ("tcp://127.0.0.1", "a port is required"),
        ("tcp://127.0.0.1:", "expected a number from 1 to 65535"),
        ("tcp://127.0.0.1:0", "0 is not in the range 1 to 65535"),
        ("tcp://127.0.0.1:65536", "65536 is not in the range 1 to 65535"),
        ("tcp://127.0.0.1:70000", "70000 is not in the range 1 to 65535"),
        ("tcp://127.0.0.1:abc", "expected a number from 1 to 65535"),
        ("tcp://127.0.0.1:-1", "expected a number from 1 to 65535"),
        ("tcp://127.0.0.1:+25", "expected a number from 1 to 65535"),
        ("tcp://127.0.0.1:²", "expected a number from 1 to 65535"),
        ("tcp://127.0.0.1:2224/", "expected a number from 1 to 65535"),
        ("tcp://:2224", "the host is empty"),
        ("tcp://::1:2224", "write IPv6 addresses in brackets"),
        ("tcp://[::1]", "a port is required"),
        ("tcp://[::1:2224", "missing ']'"),
        ("tcp://[::g]:2224", "invalid IPv6 address"),
        ("tcp://[127.0.0.1]:2224", "invalid IPv6 address"),
        ("tcp://10.0.0.256:2224", "invalid host"),
        ("tcp://user@host:2224", "invalid host"),
        ("tcp://bad_name:2224", "invalid host"),
        ("tcp://-bad.example:2224", "invalid host"),
        ("tcp://a b:2224", "invalid host"),
        ("tcp://*:2224", "invalid host"),
        ("unix://relative.sock", "must be absolute"),
        ("unix://", "must be absolute"),
        ("unix:///run/x\0y", "NUL byte"),
        ("unix:///" + "x" * 200, "longer than 107 bytes"),
    ],
)
def test_parse_invalid(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_listen_address(text)
    if text:
        assert repr(text) in str(info.value) or repr(text[6:]) in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db1.example.org", ("db1.example.org", None)),
        ("db2.example.org:3307", ("db2.example.org", 3307)),
        ("10.1.2.3:5432", ("10.1.2.3", 5432)),
        ("::1", ("::1", None)),
        ("[::1]", ("::1", None)),
        ("[2001:db8::1]:3306", ("2001:db8::1", 3306)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the host is empty"),
        (":3306", "the host is empty"),
        ("db:0", "not in the range"),
        ("db:70000", "not in the range"),
        ("db:abc", "expected a number"),
        ("[::1", "missing ']'"),
        ("[::1]3306", "expected ':PORT'"),
        ("db/x", "invalid host"),
        ("1:2:x", "invalid IPv6 address"),
    ],
)
def test_parse_host_port_invalid(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_host_port(text)


ports = st.integers(min_value=1, max_value=65535)
hostnames = st.from_regex(
    r"[a-z][a-z0-9-]{0,20}[a-z0-9](\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True
)
tcp_addresses = st.one_of(
    st.builds(TcpAddress, st.ip_addresses(v=4).map(str), ports),
    st.builds(TcpAddress, st.ip_addresses(v=6).map(lambda a: a.compressed), ports),
    st.builds(TcpAddress, hostnames, ports),
)
unix_addresses = st.builds(
    UnixAddress,
    st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
        max_size=40,
    ).map(lambda s: "/" + s),
)


@given(st.one_of(tcp_addresses, unix_addresses))
def test_str_round_trip(address: TcpAddress | UnixAddress) -> None:
    assert parse_listen_address(str(address)) == address


@given(st.ip_addresses(v=6), ports)
def test_ipv6_is_normalised(address: ipaddress.IPv6Address, port: int) -> None:
    parsed = parse_listen_address(f"tcp://[{address.exploded.upper()}]:{port}")
    assert parsed == TcpAddress(address.compressed, port)


@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_value_error(text: str) -> None:
    for candidate in (text, "tcp://" + text, "unix://" + text):
        try:
            address = parse_listen_address(candidate)
        except ValueError:
            continue
        assert parse_listen_address(str(address)) == address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/mysqld/mysqld.sock", "/run/mysqld/mysqld.sock"),
        ("unix:/run/postgresql/.s.PGSQL.5432", "/run/postgresql/.s.PGSQL.5432"),
        ("unix:/x y", "/x y"),
        ("unix://run/x.sock", "//run/x.sock"),
        ("unix:/" + "x" * 106, "/" + "x" * 106),
        ("db1.example.org", None),
        ("db:3306", None),
        ("[::1]:5432", None),
        ("unixhost", None),
        ("UNIX:/run/x.sock", None),
    ],
)
def test_parse_socket_host(text: str, expected: str | None) -> None:
    assert parse_socket_host(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("unix:", "the socket path must be absolute \\(unix:/path\\)"),
        ("unix:run/x.sock", "the socket path must be absolute"),
        ("unix:3306", "the socket path must be absolute"),
        ("unix:/run/x\0y", "NUL byte"),
        ("unix:/" + "x" * 107, "longer than 107 bytes"),
    ],
)
def test_parse_socket_host_invalid(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_socket_host(text)
    assert str(info.value).startswith(f"invalid host {text!r}: ")


@given(st.text(max_size=60))
def test_socket_host_arbitrary_text_raises_only_value_error(text: str) -> None:
    for candidate in (text, "unix:" + text):
        try:
            path = parse_socket_host(candidate)
        except ValueError:
            continue
        assert path is None or (candidate == "unix:" + path and path.startswith("/"))
