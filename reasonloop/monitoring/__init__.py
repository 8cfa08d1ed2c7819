"""reasonloop.monitoring."""
