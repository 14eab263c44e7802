"""An offer checked against what aiortc can survive, before any connection sees it.

aiortc's SDP parser raises far more than ValueError on hostile input, and an offer it
parses can still break `createAnswer` or `setLocalDescription` (a section without a
mid, `a=sendrecv x`, an `m=text` section, a BUNDLE group naming no section: each a
500 once). `validate_offer` parses the offer once and refuses, with `InvalidSdp`
(or `NoAudioInOffer`), everything outside the shape a WebRTC client sends: at most
one audio, one video and one data-channel section; each with a unique, short mid;
audio and video with a direction, RTCP multiplexing, valid payload types and
header-extension ids; the data channel over SCTP with a port; ICE credentials sized
as RFC 8445 says (`ice_policy.check_credentials`); a DTLS fingerprint and role.
Candidates are not judged here: `ice_policy.CandidateBudget` drops what it refuses.

Imports aiortc's SDP parser and the project's errors and ICE policy only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiortc.sdp import DIRECTIONS, MediaDescription, SessionDescription

from gateway.errors import InvalidSdp, NoAudioInOffer
from gateway.rtc.ice_policy import check_credentials

#: RTP payload types allowed in an offer (RFC 5761: 64-95 would collide with RTCP).
VALID_PAYLOAD_TYPES = frozenset(range(0, 64)) | frozenset(range(96, 128))
#: RFC 8285: one-byte header-extension ids are 1-14, two-byte ones up to 255.
VALID_EXTENSION_IDS = range(1, 256)
#: A mid travels in every RTP packet's `sdes:mid` extension: 16 bytes at most in the
#: one-byte form; browsers use "0", "1", ..., GStreamer "audio0", "application1".
_MID = re.compile(r"[A-Za-z0-9_.\-]{1,16}")
_KINDS = ("audio", "video", "application")
_ICE_CREDENTIAL = re.compile(r"^a=ice-(?:ufrag|pwd):[^\r\n]*", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class OfferShape:
    """What the gateway needs to know of a validated offer."""

    #: The mid whose ICE transport carries the call (BUNDLE's first, else audio's):
    #: where trickled candidates go.
    ice_mid: str
    #: Whether the caller offered a data channel.
    has_data_channel: bool
    #: The caller's ICE usernames and passwords (`a=ice-ufrag`, `a=ice-pwd`): a
    #: trickled fragment with others is an ICE restart (RFC 8839 §4.4.1.1.1).
    ice_credentials: frozenset[str] = frozenset()


def validate_offer(sdp: str) -> OfferShape:
    """Parse an offer without touching any connection; raise `InvalidSdp` or
    `NoAudioInOffer` for anything the gateway cannot answer."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # the parser's failure modes are many; all are the client's
        raise InvalidSdp(f"the offer is not valid SDP ({type(exc).__name__})") from None
    media = description.media
    kinds = [m.kind for m in media]
    if any(kind not in _KINDS for kind in kinds):
        raise InvalidSdp("only audio, video and application m-sections are supported")
    if any(kinds.count(kind) > 1 for kind in _KINDS):
        raise InvalidSdp("at most one m-section of each kind is supported")
    if "audio" not in kinds:
        raise NoAudioInOffer("the offer has no audio m-line")
    mids = _check_mids(media)
    bundle = _check_bundle(description, mids)
    for m in media:
        _check_transport(m)
        if m.kind == "application":
            _check_data_channel(m)
        else:
            _check_rtp(m)
    audio = next(m for m in media if m.kind == "audio")
    if not any(codec.name.lower() == "opus" for codec in audio.rtp.codecs):
        raise InvalidSdp("the offer's audio has no Opus codec")
    ice_mid = bundle[0] if bundle else str(audio.rtp.muxId)
    return OfferShape(
        ice_mid=ice_mid,
        has_data_channel="application" in kinds,
        ice_credentials=ice_credentials(sdp),
    )


def ice_credentials(sdp: str) -> frozenset[str]:
    """Every `a=ice-ufrag:`/`a=ice-pwd:` line of an SDP (or sdpfrag), as written."""
    return frozenset(m.group(0).strip() for m in _ICE_CREDENTIAL.finditer(sdp))


def _check_mids(media: list[MediaDescription]) -> list[str]:
    mids = [m.rtp.muxId for m in media]
    if not all(isinstance(mid, str) and _MID.fullmatch(mid) for mid in mids):
        raise InvalidSdp("every m-section needs an a=mid of 1-16 token characters")
    if len(set(mids)) != len(mids):
        raise InvalidSdp("m-sections share an a=mid")
    return [str(mid) for mid in mids]


def _check_bundle(description: SessionDescription, mids: list[str]) -> list[str]:
    """The BUNDLE group's mids (empty: none); refuses one naming unknown sections."""
    groups = [g for g in description.group if g.semantic == "BUNDLE"]
    if not groups:
        return []
    items = [str(item) for item in groups[0].items]
    if len(groups) > 1 or not items:
        raise InvalidSdp("one BUNDLE group with at least one mid is supported")
    if len(set(items)) != len(items) or not set(items) <= set(mids):
        raise InvalidSdp("the BUNDLE group names an unknown or repeated mid")
    return items


def _check_transport(m: MediaDescription) -> None:
    if m.ice is None:
        raise InvalidSdp("the offer has no ICE credentials")
    check_credentials(m.ice.usernameFragment, m.ice.password)
    if m.dtls is None or not m.dtls.fingerprints:
        raise InvalidSdp("the offer has no DTLS fingerprint and role")


def _check_rtp(m: MediaDescription) -> None:
    bad = [pt for pt in m.fmt if pt not in VALID_PAYLOAD_TYPES]
    if bad or not m.fmt:
        raise InvalidSdp(f"invalid RTP payload type {bad[0] if bad else 'list'}")
    if m.direction not in DIRECTIONS:
        raise InvalidSdp(f"the {m.kind} m-section has no valid direction")
    if not m.rtcp_mux:
        raise InvalidSdp("RTCP must be multiplexed (a=rtcp-mux)")
    if any(ext.id not in VALID_EXTENSION_IDS for ext in m.rtp.headerExtensions):
        raise InvalidSdp("an RTP header-extension id is out of range (1-255)")


def _check_data_channel(m: MediaDescription) -> None:
    if m.profile == "DTLS/SCTP":  # the legacy form: the port is the format
        port = str(m.fmt[0]) if m.fmt else ""
        valid = port.isdigit() and 0 < int(port) < 65536
    else:
        valid = (
            m.profile == "UDP/DTLS/SCTP"
            and list(m.fmt) == ["webrtc-datachannel"]
            and m.sctp_port is not None
            and 0 < m.sctp_port < 65536
        )
    if not valid:
        raise InvalidSdp("the data channel must be SCTP over DTLS with a port")
