"""reasonloop.reasoning."""
