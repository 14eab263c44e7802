"""The gateway's calls: the service the edges use, the manager that admits and tracks
calls, and one `Call` that owns its peer connection, tasks, data channel and agent
session from offer to hang-up.

Imports `rtc`, `media_tracks`, the agent seam and the wire formats; never HTTP or ADK.
"""
