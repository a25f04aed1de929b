"""The one way a URL is shown: its password masked, whatever characters the password holds.

Every URL the adapter prints, logs or puts in an error or a reply (broker, job store, result
backend) goes through ``mask_url``. It does not parse the URL as a URL: a password with an
unencoded ``#``, ``/``, ``?``, ``@`` or ``%`` makes ``urllib``, SQLAlchemy and kombu split it
in the wrong place and show part of it. Instead the credentials are everything between
``scheme://`` and the last ``@`` of the URL; what follows the first ``:`` in them is replaced by
``***``. An ``@`` later in the URL (a query value) only hides more than needed, never less.
"""

from __future__ import annotations

#: What stands for a password in a shown URL.
MASK = "***"


def mask_url(url: str) -> str:
    """Return ``url`` with its password, if any, replaced by ``***``."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    credentials, at, address = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = credentials.partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:{MASK}@{address}"
