"""Who is calling: credentials (API keys, signed call tokens), the principal they
stand for, and the checks the edges make with it (ownership, origins, rate limits).

`principal` is plain values (the calls layer imports it); `credentials` verifies
keys and tokens (PyJWT); `http` is the aiohttp side (bearer headers, WebSocket
tokens, Origin); `limits` counts use per address and per user (the `limits`
library, in process or in Redis). Nothing here imports aiortc or ADK.
"""
