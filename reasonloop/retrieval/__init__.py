"""reasonloop.retrieval.retriever."""
