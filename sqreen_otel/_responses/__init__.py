"""Security responses: actions (block or redirect an IP or a user), where they live, and their
enforcement in the request path (docs/responses.md).

* ``actions``: the action model (Sqreen's), validated; an invalid action is rejected alone.
* ``index``: the active set, matched in O(log n): IP CIDRs (longest prefix), user identifiers.
* ``passlists``: clients and paths never enforced on.
* ``sources``: ``SQREEN_ACTIONS_FILE``, and the shared action store (SQLite beside the event
  store, or Redis with ``SQREEN_REDIS_URL``).
* ``registry``: each process's current set, refreshed off the request path.
* ``enforcement``, ``respond`` and ``pages``: the decision for a request, its event, and the
  response it gets (``RequestBlocked`` for a user blocked at identify).
* ``setup``: all of it from the settings, at ``configure()``.

The recording path reaches this package only through ``respond.user_response`` (at identify);
the CLI (``_cli.actions``) writes to the same store the workers read.
"""
