"""reasonloop.evaluation."""
