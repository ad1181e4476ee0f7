"""What ``callroom serve`` checks before it loads the node: the tools it runs, the API's and SIP's ports and
the database (``store/reach.py``). Light on purpose (no FastAPI, numpy or SQLAlchemy engine imported yet),
so that these failures are said at once: on a busy machine importing the node alone takes seconds, and
starting its media process as many again."""

from __future__ import annotations

import shutil
import socket

from callroom.errors import StartupError

TOOLS = {"espeak-ng": "the speak and gather_using_speak actions (apt-get install espeak-ng)"}
BACKLOG = 2048


def check_tools() -> None:
    for tool, why in TOOLS.items():
        if shutil.which(tool) is None:
            raise StartupError(f"{tool} is not installed or not on PATH; it is needed for {why}")


def listen_http(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound now (uvicorn serves on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def check_sip_port(host: str, port: int) -> None:
    """Whether SIP's UDP port can be bound (port 0: any free one, always). The media process binds it for
    good; this early try only says a taken port before the node is loaded and that process started (a port
    taken in between is still reported, by the media process)."""
    if port <= 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StartupError(f"cannot listen for SIP on udp {host}:{port}: {exc.strerror or exc}") from None
