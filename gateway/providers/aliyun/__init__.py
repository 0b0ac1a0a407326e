"""Aliyun SMS and voice: wiring with provider failover, delivery receipts (pull and push)."""
