"""Alembic environment of the study database (run by :meth:`study_app.store.StudyStore.open`).

The store hands alembic an open connection inside its own transaction
(``config.attributes["connection"]``), so the upgrade takes the same locks as every other write
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock taken by the store) and two processes
opening one database at the same time migrate it once. Revisions live in ``versions/`` and
spell out their tables (they never import the models), so an old revision keeps meaning what it
meant; ``tests/test_study_store.py`` checks that the head revision matches the models.
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from the alembic command line
    raise RuntimeError("study migrations run through study_app.store.StudyStore.open(), which passes a connection")
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
