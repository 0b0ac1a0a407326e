"""HTTP API: one module per resource, each with its route table; the daemon's `make_app` mounts them
(gateway/daemon.py). Only this package speaks HTTP statuses: flows raise domain errors that
`errors.py` maps."""
