"""Use cases, one module each: they take what they need, raise `flows.errors` (never HTTP
statuses), and know nothing of aiohttp or `gateway.api`, which maps their errors to answers."""
