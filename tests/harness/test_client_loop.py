"""The client loop: every dask-gateway/distributed client object lives on one asyncio loop,
every call has a deadline, and nothing garbage collection does can block it."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from dask_gateway import Gateway

from fixtures.client_loop import ClientLoop, client_loop
from fixtures.errors import StageFailure

#: An address nothing listens on: the clients below never send a request.
NOWHERE = "http://127.0.0.1:9"


def test_a_hung_call_fails_naming_it_and_is_cancelled_on_the_loop():
    cancelled = threading.Event()

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with client_loop() as loop:
        started = time.monotonic()
        with pytest.raises(StageFailure, match=r"new_cluster\(\) to return within 0s"):
            loop.run(hangs, stage="gateway_cluster", what="new_cluster()", timeout=0.3)
        assert time.monotonic() - started < 2
        assert cancelled.wait(2), "the hung coroutine was left running on the loop"


def test_a_calls_own_error_comes_through_unchanged():
    async def refuses() -> None:
        raise ValueError("When specifying an image you must also provide a tag")

    with client_loop() as loop, pytest.raises(ValueError, match="must also provide a tag"):
        loop.run(refuses, stage="s", what="submit()", timeout=5)


def test_calls_run_on_the_loops_thread_and_plain_values_come_back():
    with client_loop() as loop:
        where = loop.run(threading.current_thread, stage="s", what="which thread", timeout=5)
        assert where is not threading.current_thread()
        assert where.name == "daskhub-e2e client loop"


def test_close_closes_owned_objects_newest_first_and_reports_a_hung_one():
    closed: list[str] = []

    def closer(name: str, hang: bool = False):
        async def close() -> None:
            if hang:
                await asyncio.Event().wait()
            closed.append(name)

        return close

    loop = ClientLoop()
    loop.run(lambda: None, stage="s", what="start", timeout=5)
    loop.own("first", closer("first"))
    loop.own("hung", closer("hung", hang=True))
    loop.own("last", closer("last"))
    thread = loop._thread
    started = time.monotonic()
    problems = loop.close()
    assert closed == ["last", "first"]
    assert len(problems) == 1 and problems[0].startswith("hung: StageFailure")
    assert time.monotonic() - started < 15
    assert thread is not None and not thread.is_alive()


def test_a_gateway_dropped_on_the_loops_thread_does_not_block_it():
    """The run's deadlock: a client's __del__ run by garbage collection on an IO-loop thread.
    An asynchronous Gateway made and dropped there leaves the loop free."""

    def make_and_drop() -> str:
        gateway = Gateway(address=NOWHERE, asynchronous=True)
        del gateway
        gc.collect()
        return "still serving"

    with client_loop() as loop:
        assert loop.run(make_and_drop, stage="s", what="drop", timeout=5) == "still serving"
        assert loop.run(lambda: 1, stage="s", what="a later call", timeout=5) == 1


def test_the_synchronous_client_does_deadlock_that_way():
    """The counter-proof that the test above can fail: the same drop of a SYNCHRONOUS Gateway
    on its own IO-loop thread blocks that thread for ever: the child's next call on that loop
    times out."""
    code = textwrap.dedent(f"""
        import asyncio, gc
        from dask_gateway import Gateway
        holder = [Gateway(address={NOWHERE!r})]
        loop = holder[0].loop.asyncio_loop
        def drop():
            holder.clear()
            gc.collect()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)
        loop.call_soon_threadsafe(drop)
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(3)
            print("no deadlock")
        except TimeoutError:
            print("the IO-loop thread is blocked")
    """)
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert child.stdout.strip() == "the IO-loop thread is blocked", child.stderr[-2000:]
