"""Server interceptors: the one place where exceptions become gRPC statuses.

Handlers raise `containerd_py.errdefs` exceptions and never touch status codes; the
`ErrorInterceptor` maps them by `grpc_code_name`. Anything else a handler raises is a bug:
it is logged with its traceback and answered INTERNAL with the method and the error, so
a bad request can never take the daemon down or leave the client with a bare UNKNOWN.

`wrap_handler` is shared with the namespace interceptor: grpc hands an interceptor the
handler *before* it runs (and not always on the thread that will run it), so per-call
work has to go into a wrapper around the handler's behavior.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from containerd_py import errdefs

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.ServicerContext], Any]
Wrapper = Callable[[Behavior], Behavior]


def wrap_handler(
    handler: grpc.RpcMethodHandler, unary: Wrapper, stream: Wrapper
) -> grpc.RpcMethodHandler:
    """The handler with its behavior wrapped: `unary` for single responses, `stream` for
    streamed ones (whose wrapper must return an iterator)."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **kwargs)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **kwargs)
    return handler


def status_for(exc: BaseException, method: str = "") -> tuple[grpc.StatusCode, str]:
    """The status and message a client gets for an exception a handler raised."""
    if isinstance(exc, errdefs.PyContainerdError):
        code = getattr(grpc.StatusCode, exc.grpc_code_name, None)
        if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
            return code, str(exc) or type(exc).__name__
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, f"{method or 'method'} is not implemented"
    where = f" in {method}" if method else ""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return grpc.StatusCode.INTERNAL, f"internal error{where}: {detail}"


def _abort(method: str, context: grpc.ServicerContext, exc: Exception) -> None:
    # A handler that chose its own status (context.abort, or set_code before raising, as
    # the generated "Method not implemented!" stubs do) keeps it: grpc reports that code.
    chosen = context.code()
    if chosen is not None and chosen is not grpc.StatusCode.OK:
        raise exc
    code, message = status_for(exc, method)
    if code is grpc.StatusCode.INTERNAL:
        log.error("%s failed: %s", method, message, exc_info=exc)
    else:
        log.debug("%s: %s: %s", method, code.name, message)
    context.abort(code, message)


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions to statuses for all four kinds of handler. Install it first, so it
    also sees what the interceptors after it raise."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: grpc answers UNIMPLEMENTED itself
        method = handler_call_details.method

        def unary(behavior: Behavior) -> Behavior:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behavior(request, context)
                except Exception as e:
                    _abort(method, context, e)

            return call

        def stream(behavior: Behavior) -> Behavior:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behavior(request, context)
                except Exception as e:
                    _abort(method, context, e)

            return call

        return wrap_handler(handler, unary, stream)
