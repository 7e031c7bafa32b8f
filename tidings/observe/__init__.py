"""What ops watch: Prometheus metrics, health checks, structured logs."""
