"""The synchronous client: a proxy that turns ``calc.add(5)`` into a call over Redis.

::

    calc = redisrpc.Client(redis.Redis(), "calc")
    calc.add(5)                        # a remote call
    calc.add?                          # signature and docstring, no network
    redisrpc.with_timeout(calc, 120).slow_method()

The call itself is :func:`redisrpc.core.call.calling`, a plan shared with the
asyncio client; this module only carries out its steps, each call on a reply
list of its own. A proxy is safe to share between threads: calls that
overlap share one reply list and one reader thread
(:class:`~redisrpc.client.threads.ThreadMultiplexer`), and their pushes
are coalesced.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any, TypeVar

import redis

from ..core.call import NOTE, calling
from ..core.keys import queue_name
from ..core.ownlist import OwnList
from ..core.plan import Recover, drive
from ..core.protocol import check_serializer
from ..core.transport import Transport
from .progress import ProgressCallback
from .proxy import ProxyBase, ProxyState, checked_timeout, state_of
from .stream import RemoteStream
from .threads import Flight, ThreadMultiplexer

__all__ = [
    "DEFAULT_TIMEOUT",
    "Client",
    "description",
    "refresh",
    "with_progress",
    "with_timeout",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds a call waits for its reply unless the client or the call says otherwise."""

P = TypeVar("P", bound=ProxyBase)


class Client(ProxyBase):
    """A proxy for the remote object served on ``name``.

    Args:
        redis: a redis-py client, a URL, None for ``REDIS_URL``, or another
            client's transport (to share its connections).
        name: the service name (the server's request list).
        timeout: seconds each call waits for its reply (finite; default 30).
        describe: fetch ``__describe__`` now and build a typed proxy (default).
            With False, or against a server that does not answer it (the
            original RedisRPC), any public name is a plain remote call. A name
            that no registered server serves, and whose request nobody takes,
            fails within a few seconds with :class:`~redisrpc.UnknownServiceError`.
        transport: the original RedisRPC's serializer argument; only ``'json'``.
    """

    __slots__ = ()

    def __init__(
        self,
        redis: redis.Redis | Transport | str | None,
        name: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        describe: bool = True,
        transport: str = "json",
    ) -> None:
        check_serializer(transport)
        io = Transport.of(redis)
        state = ProxyState(queue_name(name, cluster=io.cluster), io, checked_timeout(timeout))
        object.__setattr__(self, "_rpc_state", state)
        if describe:
            self._rpc_refresh()

    def _rpc_call(self, name: str, args: Any, kwargs: dict[str, Any]) -> Any:
        """Call ``name`` remotely and return its value (or its stream), or raise its error."""
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        state = self._rpc_state
        watcher = state.watcher(name)
        call = state.call(name, args, kwargs, watcher)
        flight: Flight | None = state.channels.get(_FLIGHT)
        if flight is None:
            flight = state.channels.setdefault(_FLIGHT, Flight())
        mux: ThreadMultiplexer | None = None
        calls = flight.calls  # this call's entry, popped when it ends (see Flight)
        calls.append(None)
        if len(calls) > 1 and state.echoes_ids and not state.streams(name):  # items: own list
            mux = _multiplexer(state, flight)
            call.shared_queue = mux.reply_queue
        if mux is None:
            direct = _Direct(state.transport)
            call.own = direct  # the plan runs its list's Send and Receive in place
            step = direct.step
        else:
            step = mux.step
        streaming = False
        try:
            # The clock estimate at hand (a blocking TIME once a minute): no plan step for it.
            reply = drive(calling(call, now=state.transport.now_ms()), step)
            streaming = reply.interim == "item" or reply.stream
        except KeyboardInterrupt as exc:
            # One line on what became of the call, not pages of library frames.
            raise KeyboardInterrupt(getattr(exc, NOTE, "")) from None
        finally:
            calls.pop()
            if mux is not None and not streaming:
                mux.forget(call.call_id)
            if watcher is not None:
                watcher.close()
        if streaming:
            # A multiplexed stream keeps its box (its items come on the shared list) until it ends.
            finished = None if mux is None else partial(mux.forget, call.call_id)
            return RemoteStream(state, call, reply, lambda plan: drive(plan, step), finished)
        return state.value(reply)

    def _rpc_refresh(self) -> dict[str, Any] | None:
        """Fetch the description again and rebuild this proxy's class from it."""
        state = self._rpc_state
        call = state.describe_call()
        direct = _Direct(state.transport)
        call.own = direct
        return self._rpc_adopt(drive(calling(call, now=state.transport.now_ms()), direct.step))


_FLIGHT = "threads"  # the key of a proxy's Flight among its channels


def _multiplexer(state: ProxyState, flight: Flight) -> ThreadMultiplexer:
    """The proxy's thread multiplexer, made on first use."""
    mux = flight.mux
    if mux is None:
        with flight.lock:
            if flight.mux is None:
                flight.mux = ThreadMultiplexer(
                    state.transport,
                    state.name,
                    state.reply_prefix + secrets.token_hex(16),
                    max_size=state.max_size,
                )
            mux = flight.mux
    return mux


class _Direct(OwnList):
    """A call's reply list of its own (see :class:`OwnList`), and the driver of its other steps.

    The call's plan runs the list's Send and Receive plans itself
    (:attr:`~redisrpc.core.call.Call.own`); one object per call, not two.
    """

    __slots__ = ("transport",)

    def __init__(self, transport: Transport) -> None:
        self.buffer = None  # OwnList.__init__, written out: a frame less on every call
        self.transport = transport

    def step(self, step: Any) -> Any:
        if type(step) is tuple:  # commands (the plan runs its Send and Receive itself): most steps
            return self.transport.execute(*step)
        plan = self.plan(step)
        if plan is None:
            return self.transport.step(step)
        if isinstance(step, Recover):
            return self.transport.rescue(plan)
        return self.transport.run(plan)


def refresh(proxy: ProxyBase) -> dict[str, Any] | None:
    """Fetch a proxy's remote description again (after the server changed)."""
    return proxy._rpc_refresh()  # type: ignore[no-any-return]


def description(proxy: ProxyBase) -> dict[str, Any] | None:
    """Return the cached ``__describe__`` payload of a proxy (no network)."""
    return state_of(proxy).description


def with_timeout(proxy: P, timeout: float, *, limit: float | None = None) -> P:
    """Return a proxy like ``proxy`` whose calls wait ``timeout`` seconds.

    ``redisrpc.with_timeout(stage, 120).home()`` gives one slow call more time
    without changing the shared proxy. The timeout measures silence: a call
    whose server keeps reporting progress goes on; ``limit`` is a hard limit
    in seconds however much progress comes.
    """
    return proxy._rpc_with(
        timeout=checked_timeout(timeout),
        limit=None if limit is None else checked_timeout(limit),
    )


def with_progress(proxy: P, callback: ProgressCallback) -> P:
    """Return a proxy like ``proxy`` whose calls call ``callback(done, total, message)``.

    Called on each progress update a call's server reports (see
    :func:`redisrpc.progress`); ``total`` is None when unknown. Without it,
    interactive sessions show a progress bar by themselves.
    """
    return proxy._rpc_with(progress=callback)
