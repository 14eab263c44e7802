"""Wire formats, pure parsing and encoding with no I/O: the data-channel messages
(`data_channel`, mirrored in client/protocol.js), the seed sample's WebSocket frames
(`seed_websocket`) and the ids clients may name (`ids`).

Imports pydantic, the agent events and the errors; nothing from aiortc, aiohttp or ADK.
"""
