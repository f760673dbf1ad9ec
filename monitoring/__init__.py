"""Operating the gateway: readiness, per-server health probes, call history, Prometheus metrics, a dashboard."""
