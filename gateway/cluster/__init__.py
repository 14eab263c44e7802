"""Several worker processes on one machine: the supervisor, each worker process, the
routing of calls between workers, and their shared load board.

The supervisor (`supervisor`, `load_board`) imports only the standard library and
settings; the worker side (`worker_process`, `routing`) composes the whole app.
"""
