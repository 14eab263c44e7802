"""Several worker processes on one machine, and several instances that know each other
through Redis: the supervisor, each worker process, the routing of calls between
workers, their shared load board; the fleet's registry and its cross-instance edge.

The supervisor (`supervisor`, `load_board`) imports only the standard library and
settings; the worker side (`worker_process`, `routing`) composes the whole app; the
fleet (`fleet`, `fleet_registry`, `fleet_edge`) adds redis-py and aiohttp's client.
"""
