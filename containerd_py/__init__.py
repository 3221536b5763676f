"""pycontainerd: the containerd-like daemon of the stack (images, content, snapshots,
containers, tasks and events over gRPC). Its wire API is generated into containerd_py.api."""
