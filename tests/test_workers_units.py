"""The pieces of the multi-process gateway that need no process.

Pins down: a call id carries its worker's index behind 128 random bits and anything
else is no call id; `max_calls` defaults to workers x `CALLS_PER_CORE` and an
explicit value wins; the capacity splits evenly over workers; the load board is
shared through its descriptor and a cleared slot is not serving; a worker's spec
survives the trip through its environment.
"""

from __future__ import annotations

import os

import pytest

from gateway.calls.call_ids import call_owner, new_call_id
from gateway.calls.service import WorkerLoad
from gateway.cluster.load_board import LoadBoard
from gateway.cluster.supervisor import WorkerSpec, split_capacity
from gateway.config import CALLS_PER_CORE, ConfigError, load_settings, usable_cores
from gateway.metrics.counters import COUNTER_NAMES


def test_call_ids_name_their_worker_and_stay_unguessable() -> None:
    ids = {new_call_id(3) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(call_owner(i) == 3 for i in ids)
    assert call_owner(new_call_id()) == 0
    assert call_owner(new_call_id(65535)) == 65535
    sample = next(iter(ids))
    assert len(sample) == 24
    for not_an_id in ["", "nope", sample[:-1], sample + "A", sample[:-1] + "=", "/" * 24]:
        assert call_owner(not_an_id) is None


def test_capacity_follows_workers_unless_set() -> None:
    assert load_settings(environ={}).workers == usable_cores()
    assert load_settings(environ={}).max_calls == usable_cores() * CALLS_PER_CORE
    assert load_settings({"workers": 3}, environ={}).max_calls == 3 * CALLS_PER_CORE
    from_env = load_settings(environ={"GATEWAY_WORKERS": "4", "GATEWAY_MAX_CALLS": "9"})
    assert (from_env.workers, from_env.max_calls) == (4, 9)
    assert load_settings({"max_calls": 2}, environ={"GATEWAY_WORKERS": "2"}).max_calls == 2
    for bad in ["0", "many"]:
        with pytest.raises(ConfigError, match="workers"):
            load_settings(environ={"GATEWAY_WORKERS": bad})


def test_capacity_splits_evenly() -> None:
    assert split_capacity(120, 2) == (60, 60)
    assert split_capacity(7, 3) == (3, 2, 2)
    assert split_capacity(2, 2) == (1, 1)
    assert sum(split_capacity(101, 8)) == 101


def test_load_board_is_shared_through_its_descriptor() -> None:
    board = LoadBoard.create(3)
    other = LoadBoard(os.dup(board.fd), 3)  # what a worker maps
    try:
        assert other.serving() == {}
        board.set_serving(1, 4242)
        board.set_calls(1, 5)
        other.set_calls(2, 9)  # not serving yet: counted, not listed
        zero = (0,) * len(COUNTER_NAMES)
        assert other.serving() == {1: WorkerLoad(4242, 5, zero)}
        assert board.slot(2) is None
        board.set_serving(2, 4343)
        assert other.slot(2) == WorkerLoad(4343, 9, zero)
        counters = tuple(range(1, len(COUNTER_NAMES) + 1))
        other.set_counters(2, counters)  # a worker's stall counters, seen by its siblings
        assert board.slot(2) == WorkerLoad(4343, 9, counters)
        board.clear(1)
        assert other.serving() == {2: WorkerLoad(4343, 9, counters)}
    finally:
        other.close()
        board.close()


def test_worker_spec_round_trip() -> None:
    settings = load_settings({"ice_servers": "stun:a:1", "workers": 2}, environ={})
    spec = WorkerSpec(
        index=1,
        shares=(60, 60),
        parent_pid=os.getpid(),
        listen_fds=(5, 6),
        board_fd=7,
        status_fd=8,
        socket_dir="/tmp/x",
        settings=settings.model_dump(mode="json"),
    )
    again = WorkerSpec.from_json(spec.to_json())
    assert again == spec
    assert type(settings).model_validate(again.settings) == settings
