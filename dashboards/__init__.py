"""Grafana dashboards as code, provisioning files and upload (issue #6)."""
