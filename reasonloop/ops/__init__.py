"""reasonloop.ops."""
