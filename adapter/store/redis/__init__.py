"""The Redis job store: the store (``store``), its key layout and hash encoding (``layout``),
and the Lua scripts of every write (``scripts``)."""
