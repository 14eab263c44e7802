"""Wire formats, pure parsing and encoding with no I/O: the data-channel messages and
the ids clients may name (`data_channel`, mirrored in client/protocol.js), and the
seed sample's WebSocket frames (`seed_websocket`).

Imports pydantic, the agent events and the errors; nothing from aiortc, aiohttp or ADK.
"""
