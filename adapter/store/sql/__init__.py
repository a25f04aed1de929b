"""The SQL job store (SQLite, PostgreSQL): the table and writes (``store``), the per-process
engine (``engine``), and Vendure's list options as SQL (``query``)."""
