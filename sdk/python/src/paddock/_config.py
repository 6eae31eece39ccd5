"""Where the gateway is and how to authenticate, from arguments, the environment or the token
file ``paddock serve`` writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

DEFAULT_URL = "http://127.0.0.1:7878"


def paddock_home() -> Path:
    """``$PADDOCK_HOME``, else ``/var/lib/paddock`` for root, else ``~/.local/share/paddock``."""
    env = os.environ.get("PADDOCK_HOME")
    if env:
        return Path(env)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/paddock")
    return Path.home() / ".local" / "share" / "paddock"


def resolve_url(url: Optional[str]) -> str:
    return (url or os.environ.get("PADDOCK_URL") or DEFAULT_URL).rstrip("/")


def resolve_token(token: Optional[str]) -> Optional[str]:
    """The explicit token, else ``$PADDOCK_TOKEN``, else ``$PADDOCK_HOME/token`` if readable."""
    if token:
        return token
    env = os.environ.get("PADDOCK_TOKEN")
    if env:
        return env.strip()
    path = paddock_home() / "token"
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None
