"""Twilio SMS and voice: wiring and credentials reload."""
