"""A WHIP-shaped caller made of GStreamer's webrtcbin: an independent RSA DTLS peer.

Runs under the *system* Python (`/usr/bin/python3`, Debian's PyGObject and GStreamer
packages; `scripts/bootstrap --test` installs them), never inside the venv. webrtcbin
is the same WebRTC and DTLS code as GStreamer's `whipclientsink`; its DTLS certificate
is RSA (GStreamer's `dtls` plugin makes a 2048-bit RSA key), unlike the ECDSA ones of
browsers, aiortc, werift and libdatachannel.

What it does, in one GLib main loop:
1. offers sendrecv Opus (an `audiotestsrc` sine, `--freq`) and one data channel,
   ICE on 127.0.0.1 only, all candidates in the offer (no trickle, as `whipclientsink`
   with its default settings);
2. `POST`s the offer to `--url` (`--offer-setup` rewrites its `a=setup:` to force a
   DTLS role), applies the answer;
3. decodes what it hears (`rtpopusdepay ! opusdec ! level`) for `--seconds` after the
   answer, keeps data-channel messages, then `DELETE`s the call.

Prints one JSON object on stdout: states, the DTLS role it played and its certificate
(PEM), the decoded audio levels (dBFS RMS, every 100 ms), the data-channel messages.
Exits 0 whenever it could report; the test decides what passes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

SOURCE = (
    "audiotestsrc is-live=true wave=sine volume=0.3 freq={freq} ! audioconvert ! audioresample"
    " ! audio/x-raw,rate=48000,channels=1 ! opusenc bitrate=32000 ! rtpopuspay pt=111"
    " ! application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"
    " ! webrtcbin name=webrtc bundle-policy=max-bundle"
)
SILENCE_DB = -100.0


def _keep_alive(gobject: Any) -> Any:
    """Take one more reference to a GObject that PyGObject would otherwise free.

    Seen with Debian's GStreamer 1.22: the `ice-agent` webrtcbin hands out arrives with
    a reference count of 1 held by the Python wrapper alone, so dropping the wrapper
    destroys webrtcbin's own ICE agent ("gst_webrtc_ice_add_stream: assertion
    'GST_IS_WEBRTC_ICE (ice)' failed" at the first offer). Leaking one reference in a
    short-lived process is the simple way round.
    """
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype = ctypes.c_void_p
    pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    libgobject = ctypes.CDLL("libgobject-2.0.so.0")
    libgobject.g_object_ref.argtypes = [ctypes.c_void_p]
    libgobject.g_object_ref.restype = ctypes.c_void_p
    libgobject.g_object_ref(pointer(gobject.__gpointer__, None))
    return gobject


def description(kind: Any, sdp: str) -> Any:
    _, message = GstSdp.SDPMessage.new_from_text(sdp)
    return GstWebRTC.WebRTCSessionDescription.new(kind, message)


class Caller:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipeline = Gst.parse_launch(SOURCE.format(freq=args.freq))
        self.webrtc = self.pipeline.get_by_name("webrtc")
        self.report: dict[str, Any] = {
            "http_status": None,
            "answer_setup": None,
            "connection_states": [],
            "ice_states": [],
            "dtls_client": None,
            "dtls_state": None,
            "certificate_pem": None,
            "levels_db": [],
            "messages": [],
            "errors": [],
        }
        self.location: str | None = None
        self.offering = False
        self.posted = False
        self.offer: Any = None
        self.answer: Any = None
        self.channel: Any = None
        ice = self.ice = _keep_alive(self.webrtc.get_property("ice-agent"))
        ice.emit("add-local-ip-address", "127.0.0.1")  # test traffic stays on loopback
        ice.set_property("ice-tcp", False)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering_state)
        self.webrtc.connect("pad-added", self.on_pad_added)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_bus_message)

    # -- offer and answer -------------------------------------------------------------

    def start(self) -> None:
        self.pipeline.set_state(Gst.State.PLAYING)
        self.channel = self.webrtc.emit("create-data-channel", "whip", None)
        self.channel.connect("on-message-string", self.on_channel_message)
        GLib.timeout_add_seconds(self.args.limit_s, self.finish)

    def on_negotiation_needed(self, *_: Any) -> None:
        if not self.offering:  # one offer for the audio and the data channel
            self.offering = True
            promise = Gst.Promise.new_with_change_func(self.on_offer)
            self.webrtc.emit("create-offer", None, promise)

    def on_offer(self, promise: Gst.Promise) -> None:
        reply = promise.get_reply()
        if reply.has_field("error"):
            self.report["errors"].append(f"create-offer: {reply.get_value('error')}")
            self.loop.quit()
            return
        # The reply owns the offer (PyGObject does not copy it) and webrtcbin applies a
        # description later, on its own thread: make our own and keep it referenced.
        self.offer = description(
            GstWebRTC.WebRTCSDPType.OFFER, reply.get_value("offer").sdp.as_text()
        )
        self.webrtc.emit("set-local-description", self.offer, Gst.Promise.new())

    def on_gathering_state(self, *_: Any) -> None:
        if (
            self.webrtc.get_property("ice-gathering-state")
            == GstWebRTC.WebRTCICEGatheringState.COMPLETE
        ):
            GLib.idle_add(self.post_offer)

    def post_offer(self) -> bool:
        if self.posted:
            return False
        self.posted = True
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        if self.args.offer_setup:
            sdp = re.sub(r"a=setup:\w+", f"a=setup:{self.args.offer_setup}", sdp)
        request = urllib.request.Request(
            self.args.url,
            data=sdp.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.report["http_status"] = response.status
                self.location = response.headers.get("Location")
                answer = response.read().decode()
        except urllib.error.HTTPError as exc:
            self.report["http_status"] = exc.code
            self.report["errors"].append(exc.read().decode(errors="replace")[:300])
            self.loop.quit()
            return False
        except OSError as exc:  # refused, reset, timed out
            self.report["errors"].append(f"POST failed: {exc}")
            self.loop.quit()
            return False
        setup = re.search(r"a=setup:(\w+)", answer)
        self.report["answer_setup"] = setup.group(1) if setup else None
        self.answer = description(GstWebRTC.WebRTCSDPType.ANSWER, answer)
        self.webrtc.emit("set-remote-description", self.answer, Gst.Promise.new())
        GLib.timeout_add(int(self.args.seconds * 1000), self.finish)
        return False

    # -- media, data channel, states --------------------------------------------------

    def on_pad_added(self, _: Any, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        sink = Gst.parse_bin_from_description(
            "rtpopusdepay ! opusdec ! audioconvert ! level interval=100000000 post-messages=true"
            " ! fakesink sync=false",
            True,
        )
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_channel_message(self, _: Any, text: str) -> None:
        self.report["messages"].append(text)

    def on_connection_state(self, *_: Any) -> None:
        state = self.webrtc.get_property("connection-state").value_nick
        self.report["connection_states"].append(state)
        if state == "failed":
            GLib.timeout_add(300, self.finish)  # let the bus deliver the error first

    def on_ice_state(self, *_: Any) -> None:
        self.report["ice_states"].append(
            self.webrtc.get_property("ice-connection-state").value_nick
        )

    def on_bus_message(self, _: Any, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ELEMENT:
            structure = message.get_structure()
            if structure is not None and structure.get_name() == "level":
                rms = structure.get_value("rms")
                value = max(rms) if rms else SILENCE_DB
                self.report["levels_db"].append(value if math.isfinite(value) else SILENCE_DB)
        elif message.type in (Gst.MessageType.ERROR, Gst.MessageType.WARNING):
            error, debug = (
                message.parse_error()
                if message.type == Gst.MessageType.ERROR
                else message.parse_warning()
            )
            self.report["errors"].append(
                f"{message.src.get_name()}: {error.message} ({debug})"[:400]
            )

    def dtls_transport(self) -> Any:
        transceiver = self.webrtc.emit("get-transceiver", 0)
        return transceiver.get_property("sender").get_property("transport") if transceiver else None

    # -- the end --------------------------------------------------------------------

    def finish(self) -> bool:
        transport = self.dtls_transport()
        if transport is not None:
            self.report["dtls_client"] = transport.get_property("client")
            self.report["dtls_state"] = transport.get_property("state").value_nick
            self.report["certificate_pem"] = transport.get_property("certificate")
        if self.location:
            url = urllib.parse.urljoin(self.args.url, self.location)
            request = urllib.request.Request(url, method="DELETE")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    self.report["delete_status"] = response.status
            except urllib.error.URLError as exc:
                self.report["errors"].append(f"DELETE failed: {exc}")
            self.location = None
        self.loop.quit()
        return False

    def run(self) -> dict[str, Any]:
        self.start()
        self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)
        return self.report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the gateway's POST /calls URL")
    parser.add_argument("--offer-setup", choices=["actpass", "active", "passive"], default=None)
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="how long to listen after the answer"
    )
    parser.add_argument("--freq", type=float, default=440.0, help="the sine the caller sends")
    parser.add_argument("--limit-s", type=int, default=20, help="give up after this long")
    args = parser.parse_args()
    Gst.init(None)
    json.dump(Caller(args).run(), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
