"""Shared library of the Shop services.

``shopkit`` holds what every service needs and nothing service-specific:
configuration, the database session, the problem+json error shape, request
ids and JSON logging, health and metrics endpoints, token verification,
the idempotency-key store, the HTTP client for calls between services and
pagination. It is imported by the services, never run as one.
"""
