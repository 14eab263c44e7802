"""WebRTC below the call: peer connections from untrusted SDP, ICE, the caller's
receive path, the agent's Opus packets and their pacing clock.

Imports aiortc, aioice and PyAV; nothing about HTTP or agents. Every touch of
aiortc's or aioice's private internals is in `_aiortc` / `_aioice`, each guarded by
a test (`tests/test_seams.py`).
"""
