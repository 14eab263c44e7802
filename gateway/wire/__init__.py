"""Wire formats, pure parsing and encoding with no I/O: the data-channel messages and
the ids clients may name (`data_channel`, mirrored in client/protocol.js), and the
WebSocket protocols of ADK's samples, the seed's (`seed_websocket`) and bidi-demo's
(`bidi_demo`), with what the transport needs of a protocol (`socket_protocol`).

Imports pydantic, the agent events, the errors and the named audio formats
(`audio/formats`); nothing from aiortc, aiohttp or ADK.
"""
