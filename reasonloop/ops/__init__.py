"""The ops layer: running the flows somewhere else than a terminal.

- `deployments.py` (every flow as a Prefect deployment; starting and following runs), `prefect_server.py` (a local
  Prefect server under the state folder), `corpus_watch.py` (a changed corpus starts a reindex);
- `config.py`: the prefect and deployments sections.

May import: the layers below and the shared leaves. It names the flows by module path (importlib), never by
import: the core does not import `flows` or `tasks`."""
