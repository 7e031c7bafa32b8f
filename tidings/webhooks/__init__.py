"""tidings' events told to HTTPS endpoints: signing (signing.py), the dispatcher beside each
worker (dispatcher.py), and the endpoints' service layer shared by the API, the CLI and the
console (service.py). The outbox itself is in the store (tidings.store.webhooks)."""
