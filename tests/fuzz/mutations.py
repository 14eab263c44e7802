"""Hostile inputs for fuzzing, built from the corpus: mutated offers, sdpfrags, JSON.

A mutation is a small, printable edit of a real offer (`corpus/offers/`): delete,
duplicate, swap or truncate a line, replace a value or a number with a boundary
value, insert a line from a dictionary of what aiortc or the gateway once failed on,
duplicate or drop a whole m-section, change line endings. Real offers as seeds keep
most mutants close to valid, so they reach past the parser into negotiation, where
the hard failures are.

Two ways to draw them, same operations: Hypothesis strategies (`offers()`,
`sdpfrags()`; shrinkable, for the fuzz tests) and a seeded `random.Random`
(`random_offer`; fast and repeatable, for the hostile-load test). Nothing leaves the
machine: corpus candidates are moved to loopback (`loopback_only`; mDNS names would be
resolved by multicast), no mutation writes an mDNS name, and a gateway under test
gathers on 127.0.0.1 only, from which the kernel sends nowhere else (EINVAL).
Imports the standard library and Hypothesis only.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

#: Lines that broke aiortc or the gateway once, and their relatives.
HOSTILE_LINES: tuple[str, ...] = (
    "a=sendrecv x",
    "a=recvonly",
    "a=inactive",
    "a=mid:",
    "a=mid:0",
    "a=mid:1",
    "a=mid:" + "m" * 300,
    "a=group:BUNDLE",
    "a=group:BUNDLE 7",
    "a=group:BUNDLE 1 0",
    "a=group:BUNDLE 0 0 1",
    "a=group:LS 0 1",
    "m=text 9 UDP/TLS/RTP/SAVPF 0",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=application 9 DTLS/SCTP 5000",
    "m=application 9 DTLS/SCTP x",
    "m=message 9 TCP/MSRP *",
    "a=setup:active",
    "a=setup:passive",
    "a=setup:holdconn",
    "a=rtcp-mux",
    "a=rtcp:9 IN IP6 ::",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=250",
    "a=fmtp:111 minptime=x;useinbandfec=1",
    "a=rtcp-fb:* nack",
    "a=rtcp-fb:111",
    "a=extmap:0 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:300 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:15 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:1/sendonly urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=ssrc:4294967296 cname:x",
    "a=ssrc-group:FID 1",
    "a=ssrc-group:FID 1 2 3",
    "a=msid:a",
    "a=sctp-port:0",
    "a=sctp-port:70000",
    "a=max-message-size:0",
    "a=max-message-size:-1",
    "a=sctpmap:5000 webrtc-datachannel 1024",
    "a=ice-lite",
    "a=ice-options:ice2",
    "a=ice-ufrag:abc",
    "a=ice-ufrag:" + "u" * 257,
    "a=ice-ufrag:has space",
    "a=ice-pwd:short",
    "a=ice-pwd:" + "p" * 257,
    "a=fingerprint:sha-1 00",
    "a=fingerprint:md5 00:11",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 1 typ host",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 99999 typ host",
    "a=candidate:1 2 udp 2130706431 127.0.0.1 40000 typ host",
    "a=candidate:1 1 tcp 2130706431 127.0.0.1 40000 typ host tcptype passive",
    "a=candidate:1 1 udp 2130706431 169.254.169.254 80 typ host",
    "a=candidate:1 1 udp 2130706431 224.0.0.251 5353 typ host",
    "a=candidate:1 1 udp 2130706431 255.255.255.255 40000 typ host",
    "a=candidate:1 1 udp 2130706431 0.0.0.0 40000 typ host",
    "a=candidate:1 1 udp 2130706431 10.0.0.1 40000 typ host",
    "a=candidate:1 1 udp 2130706431 100.64.0.1 40000 typ host",
    "a=candidate:1 1 udp 2130706431 fe80::1 40000 typ host",
    "a=candidate:1 1 udp 2130706431 ::ffff:10.0.0.1 40000 typ host",
    "a=candidate:1 1 udp 2130706431 example.com 40000 typ host",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ prflx",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ relay raddr x rport y",
    "a=candidate:1 1 udp x 127.0.0.1 40000 typ host",
    "a=candidate:1 1 udp 2130706431 127.0.0.1",
    "a=end-of-candidates",
    "c=IN IP4 999.0.0.1",
    "c=IN IP6 ::1",
    "b=AS:0",
    "a=",
    "a=:",
    "x",
    "",
    " ",
    "\t",
    "a=\x00",
    "a=mid:\u00e9",
)

#: What a value (after `:` or `=`) or a number may become.
BOUNDARY_VALUES: tuple[str, ...] = (
    "",
    "0",
    "-1",
    "1",
    "63",
    "64",
    "95",
    "127",
    "128",
    "255",
    "256",
    "1023",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "1e9",
    "NaN",
    "x",
    " ",
    "::",
    "\u00e9",
    "\x00",
    "%s%n",
    "9" * 40,
)

OPERATIONS: tuple[str, ...] = (
    "delete",
    "duplicate",
    "swap",
    "insert",
    "value",
    "number",
    "cut_line",
    "append",
    "dup_section",
    "drop_section",
    "newlines",
    "truncate",
)


@dataclass(frozen=True, slots=True)
class Mutation:
    """One edit: `operation` at line `at` (modulo the line count), using `pick`
    (an index into a dictionary or a position, modulo its size)."""

    operation: str
    at: int
    pick: int


@cache
def corpus_offers() -> dict[str, str]:
    """Real offers by file name, CRLF line endings whatever git did to them."""
    return {p.name: _crlf(p.read_text()) for p in sorted((CORPUS_DIR / "offers").glob("*.sdp"))}


@cache
def corpus_sdpfrags() -> dict[str, str]:
    return {
        p.name: _crlf(p.read_text()) for p in sorted((CORPUS_DIR / "sdpfrag").glob("*.sdpfrag"))
    }


def _crlf(text: str) -> str:
    return "".join(line + "\r\n" for line in text.splitlines())


def loopback_only(sdp: str, address: str = "127.0.0.1") -> str:
    """The same SDP with every candidate's address on loopback (ports kept): a corpus
    offer the gateway answers without anything leaving the machine (mDNS names would
    be resolved with multicast queries; public addresses are someone's)."""
    return re.sub(
        r"^(a=candidate:\S+ \S+ \S+ \S+ )\S+",
        lambda m: m.group(1) + address,
        sdp,
        flags=re.MULTILINE,
    )


def apply(sdp: str, mutations: list[Mutation]) -> str:
    """`sdp` with each mutation applied in turn."""
    ending = "\r\n"
    lines = sdp.splitlines()
    for mutation in mutations:
        if mutation.operation == "newlines":
            ending = ("\n", "\r", "\r\n\r\n", "\n\r")[mutation.pick % 4]
        elif mutation.operation == "truncate":
            text = ending.join(lines)
            lines = text[: mutation.pick % (len(text) + 1)].split(ending)
        else:
            lines = _edit(lines, mutation)
    return ending.join(lines) + ending


def _edit(lines: list[str], m: Mutation) -> list[str]:
    if not lines:
        return [HOSTILE_LINES[m.pick % len(HOSTILE_LINES)]]
    i = m.at % len(lines)
    line = lines[i]
    op = m.operation
    if op == "delete":
        return _splice(lines, i, [])
    if op == "duplicate":
        return _splice(lines, i, [line, line])
    if op == "swap":
        j = m.pick % len(lines)
        lines = list(lines)
        lines[i], lines[j] = lines[j], lines[i]
        return lines
    if op == "insert":
        return _splice(lines, i, [HOSTILE_LINES[m.pick % len(HOSTILE_LINES)], line])
    if op == "value":
        head = re.match(r"^(\w=[\w-]*[:=]?)", line)
        value = BOUNDARY_VALUES[m.pick % len(BOUNDARY_VALUES)]
        return _splice(lines, i, [(head.group(1) if head else "") + value])
    if op == "number":
        numbers = list(re.finditer(r"\d+", line))
        if not numbers:
            return lines
        n = numbers[m.pick % len(numbers)]
        value = BOUNDARY_VALUES[(m.pick // len(numbers)) % len(BOUNDARY_VALUES)]
        return _splice(lines, i, [line[: n.start()] + value + line[n.end() :]])
    if op == "cut_line":
        return _splice(lines, i, [line[: m.pick % (len(line) + 1)]])
    if op == "append":
        suffix = (" x", " ", "\x00", ":", " 0 0 0", "\u00e9", "\r")[m.pick % 7]
        return _splice(lines, i, [line + suffix])
    return _edit_section(lines, m)


def _splice(lines: list[str], i: int, replacement: list[str]) -> list[str]:
    """`lines` with line `i` replaced by `replacement`."""
    return [*lines[:i], *replacement, *lines[i + 1 :]]


def _edit_section(lines: list[str], m: Mutation) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if not starts:
        return lines
    k = m.pick % len(starts)
    start = starts[k]
    end = starts[k + 1] if k + 1 < len(starts) else len(lines)
    if m.operation == "dup_section":
        return lines + lines[start:end]
    return lines[:start] + lines[end:]  # drop_section


def mutations(max_size: int = 4) -> st.SearchStrategy[list[Mutation]]:
    """Lists of mutations (shrinking towards fewer and simpler ones)."""
    one = st.builds(
        Mutation,
        operation=st.sampled_from(OPERATIONS),
        at=st.integers(0, 200),
        pick=st.integers(0, 10_000),
    )
    return st.lists(one, min_size=1, max_size=max_size)


@st.composite
def offers(draw: st.DrawFn, max_mutations: int = 4) -> str:
    """A corpus offer (candidates on loopback) with a few mutations; now and then a
    free-text line from Hypothesis instead of one from the dictionary."""
    name = draw(st.sampled_from(sorted(corpus_offers())))
    sdp = apply(loopback_only(corpus_offers()[name]), draw(mutations(max_mutations)))
    if draw(st.booleans()):
        return sdp
    lines = sdp.split("\r\n")
    at = draw(st.integers(0, len(lines)))
    text = draw(st.text(st.characters(codec="utf-8"), max_size=60))
    return "\r\n".join([*lines[:at], text, *lines[at:]])


@st.composite
def sdpfrags(draw: st.DrawFn) -> str:
    """A corpus sdpfrag (addresses on loopback) with a few mutations."""
    name = draw(st.sampled_from(sorted(corpus_sdpfrags())))
    return apply(loopback_only(corpus_sdpfrags()[name]), draw(mutations(3)))


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars, lists and objects nested a few levels."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=max_leaves,
    )


def random_mutations(rng: random.Random, max_size: int = 4) -> list[Mutation]:
    return [
        Mutation(rng.choice(OPERATIONS), rng.randrange(201), rng.randrange(10_001))
        for _ in range(rng.randint(1, max_size))
    ]


def random_offer(rng: random.Random) -> str:
    """A mutated corpus offer from a seeded generator (the hostile-load test)."""
    name = rng.choice(sorted(corpus_offers()))
    return apply(loopback_only(corpus_offers()[name]), random_mutations(rng))


def random_sdpfrag(rng: random.Random) -> str:
    """A mutated corpus sdpfrag from a seeded generator."""
    name = rng.choice(sorted(corpus_sdpfrags()))
    return apply(loopback_only(corpus_sdpfrags()[name]), random_mutations(rng, 3))


#: `POST /offer` bodies that are not what the endpoint takes, or barely are.
HOSTILE_JSON: tuple[str, ...] = (
    "",
    "null",
    "0",
    '"offer"',
    "[]",
    "{}",
    "[" * 30_000 + "]" * 30_000,  # past any parser's nesting limit, under 64 KiB
    '{"sdp": ' * 5_000 + "1" + "}" * 5_000,
    '{"sdp": "v=0", "type": "offer"',
    '{"sdp": "v=0", "type": "offer"}}',
    '{"sdp": null, "type": "offer"}',
    '{"sdp": 1e999, "type": "offer"}',
    '{"sdp": NaN, "type": "offer"}',
    '{"sdp": ["v=0"], "type": "offer"}',
    '{"sdp": {"v": 0}, "type": "offer"}',
    '{"sdp": "", "type": "offer"}',
    '{"sdp": "v=0", "type": "answer"}',
    '{"sdp": "v=0", "type": "offer", "type": "answer"}',
    '{"sdp": "v=0", "type": "offer", "mode": 1}',
    '{"sdp": "v=0", "type": "offer", "session_id": ""}',
    '{"sdp": "v=0", "type": "offer", "session_id": "' + "s" * 129 + '"}',
    '{"sdp": "v=0", "type": "offer", "user_id": "../../etc/passwd"}',
    '{"sdp": "v=0", "type": "offer", "user_id": "a\\u0000b"}',
    '{"sdp": "\\ud800", "type": "offer"}',
    '{"sdp": "\\u0000", "type": "offer"}',
    '{"sdp": "v=0\\r\\n' + "a=x\\r\\n" * 9_000 + '", "type": "offer"}',
    '{"sdp": "v=0", "type": "offer", "extra": ' + "[1," * 1_000 + "1" + "]" * 1_000 + "}",
    '{"\\ud800": 1, "sdp": "v=0", "type": "offer"}',
    "\ufeff{}",
    '{"sdp": "v=0", "type": "offer"}' * 2,
)
