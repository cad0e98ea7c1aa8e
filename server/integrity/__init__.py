"""Tamper evidence and backups: the journal's hash chains (``chain``), their check
(``verify``), consistent copies of a SQLite store on a schedule (``backup``), and the
``edge-server verify`` and ``edge-server backup`` commands (``cli``)."""
