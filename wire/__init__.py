"""What crosses Redis between a line's processes: the queue protocol (`wire.protocol`) and the Redis
client with its outage handling (`wire.connections`). Imports nothing of ours, so the publisher, the
worker, `lineguard status` and the dashboard can all share it."""
