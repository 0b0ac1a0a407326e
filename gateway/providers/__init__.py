"""One package per provider: its wiring, callbacks and receipt parsing; `channels/` holds the vendor clients."""
