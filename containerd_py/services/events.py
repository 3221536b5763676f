"""Events services: the clients' Publish/Forward/Subscribe and the shims' Forward, both
feeding one exchange."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc

from containerd_py import namespaces
from containerd_py.api.runtime.events.v1 import events_pb2 as runtime_pb
from containerd_py.api.runtime.events.v1 import events_pb2_grpc as runtime_grpc
from containerd_py.api.services.events.v1 import events_pb2 as pb
from containerd_py.api.services.events.v1 import events_pb2_grpc
from containerd_py.api.types.v1.event_pb2 import Envelope
from containerd_py.errdefs import InvalidArgument
from containerd_py.events import SUBSCRIBED_METADATA_KEY
from containerd_py.events.exchange import Exchange
from containerd_py.services.introspection import EVENT_PLUGIN, GRPC_PLUGIN, PluginInfo

if TYPE_CHECKING:
    from containerd_py.services import Deps


class EventsService(events_pb2_grpc.EventsServicer):
    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def Publish(
        self, request: pb.PublishRequest, context: grpc.ServicerContext
    ) -> pb.PublishResponse:
        if not request.HasField("event"):
            raise InvalidArgument("publish: event must be set")
        self._exchange.publish(namespaces.current(), request.topic, request.event)
        return pb.PublishResponse()

    def Forward(
        self, request: pb.ForwardRequest, context: grpc.ServicerContext
    ) -> pb.ForwardResponse:
        self._exchange.forward(request.envelope)
        return pb.ForwardResponse()

    def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[Envelope]:
        # The namespace header does not restrict a subscription (filter on namespace).
        sub = self._exchange.subscribe(request.filters, alive=context.is_active)
        # Fires on the client's cancel or disconnect, from a grpc thread: it wakes the
        # iteration below, which would otherwise wait for the next event.
        context.add_callback(sub.close)
        # Tells the client the subscription is live (see SUBSCRIBED_METADATA_KEY).
        context.send_initial_metadata(((SUBSCRIBED_METADATA_KEY, "1"),))
        with sub:
            yield from sub


class RuntimeEventsService(runtime_grpc.EventsServicer):
    """pycontainerd.runtime.events.v1.Events: how shims deliver their events."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def Forward(
        self, request: runtime_pb.ForwardRequest, context: grpc.ServicerContext
    ) -> runtime_pb.ForwardResponse:
        self._exchange.forward(request.envelope)
        return runtime_pb.ForwardResponse()


def register(server: grpc.Server, deps: Deps) -> list[PluginInfo]:
    events_pb2_grpc.add_EventsServicer_to_server(EventsService(deps.exchange), server)
    runtime_grpc.add_EventsServicer_to_server(RuntimeEventsService(deps.exchange), server)
    return [
        PluginInfo(GRPC_PLUGIN, "events", requires=(EVENT_PLUGIN,)),
        PluginInfo(GRPC_PLUGIN, "runtime-events", requires=(EVENT_PLUGIN,)),
    ]
