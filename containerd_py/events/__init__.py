"""Events: the exchange (pub/sub with filters), its filter language, and the topics."""

# The daemon sends this initial metadata on a Subscribe stream once the subscription is
# registered, so a client can wait for it and know that nothing published afterwards is
# missed (containerd has no such signal; its clients race their first event).
SUBSCRIBED_METADATA_KEY = "pycontainerd-subscribed"
