"""Monitoring: events, stores, analytics, alerts, metrics and traces, all off the request path."""
