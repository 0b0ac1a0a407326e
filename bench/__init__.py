"""Benchmarks: the real gateway daemon against a local webhook receiver, side by side with a bare
aiohttp client loop (see bench/README.md)."""
