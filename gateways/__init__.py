"""gateways package."""
