"""The trio side of the socket: listener, peer check, per-client sessions and output queues."""
