"""Reusable fakes for tests and benchmarks (local servers, not patched libraries)."""

from __future__ import annotations
