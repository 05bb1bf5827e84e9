"""User-controlled strings on the dashboard are shown as text, never rendered as markup.

Streamlit renders markdown (and its ``:color[...]`` / ``:material/...:``
directives) in headers, captions, alerts and labels. A study named like a
markdown image, ``![x](http://host/track.png)``, would make every viewer's
browser fetch that URL. :func:`md_text` escapes every markdown character of a
study name, an attribute value or an error message, and masks credentials,
so that the viewer sees exactly the characters that were stored.
"""

from __future__ import annotations

import re

from inverse.masking import mask_credentials

#: ASCII punctuation that markdown, HTML or Streamlit's directives give a meaning (CommonMark escapes all of it).
_SPECIAL = re.compile(r"""([\\`*_{}\[\]()#+\-.!|<>~$:&"'=^@/?%,;])""")


def md_text(value: object) -> str:
    """``value`` as markdown that renders as exactly its characters, on one line, with credentials masked.

    Examples
    --------
    >>> md_text("![x](http://evil/p.png)")
    '\\\\!\\\\[x\\\\]\\\\(http\\\\:\\\\/\\\\/evil\\\\/p\\\\.png\\\\)'
    """
    text = " ".join(mask_credentials(str(value)).split())
    return _SPECIAL.sub(r"\\\1", text)
