"""HTTP API (Quart-Trio on Hypercorn), configuration and the `tickets` command."""
