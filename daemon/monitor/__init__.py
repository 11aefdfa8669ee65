"""Monitoring: scrape every deployment's ``/metrics``, keep the samples (with rollups and retention), and derive
request rate, error rate, latency percentiles, model quality and input drift over a window."""
