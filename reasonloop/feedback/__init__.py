"""reasonloop.feedback.records."""
