"""Dispatch beyond one provider: the failover composite over the configured providers."""
