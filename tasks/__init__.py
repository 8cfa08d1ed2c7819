"""Plain typed functions wrapped as Prefect tasks; call `.fn` to use one without Prefect."""
