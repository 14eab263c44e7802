"""Calls from independent WebRTC stacks: GStreamer's webrtcbin, werift, libdatachannel."""
