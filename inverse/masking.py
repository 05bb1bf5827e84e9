"""Masking of credentials in storage URLs, wherever a URL is printed or stored.

One function, :func:`mask_credentials`, is applied to every error line the
command line prints, to the storage URLs in tables and on the dashboard, and
to the spec a study stores in its database, so that a PostgreSQL password
given in ``--storage postgresql://alice:PASSWORD@host/db`` never leaves the
process.
"""

from __future__ import annotations

import re

#: ``scheme://user:password@host``: the password runs to the token's last ``@`` (a raw ``@`` in it is common).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<secret>\S*)@(?P<host>[^@\s]*)")
#: ``password=...`` in a query string or a libpq key/value string.
_PASSWORD_PARAM = re.compile(r"(?P<head>\bpassword=)(?P<secret>[^&\s'\"]*)", re.IGNORECASE)

#: What a password is replaced with.
MASK = "***"


def mask_credentials(text: str) -> str:
    """``text`` with the passwords of every URL in it replaced by ``***``.

    Examples
    --------
    >>> mask_credentials("cannot open postgresql://alice:s3cret@db:5432/studies")
    'cannot open postgresql://alice:***@db:5432/studies'
    >>> mask_credentials("sqlite:///runs/opv.db")
    'sqlite:///runs/opv.db'
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@{m['host']}", text)
    return _PASSWORD_PARAM.sub(lambda m: f"{m['head']}{MASK}", text)
