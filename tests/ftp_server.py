"""A real FTP server (pyftpdlib) on 127.0.0.1 in a thread, for job sources and destinations:
one user with a password and anonymous, each in its own home, and a log of what it saw."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

USER, PASSWORD = "bob", "s3cret-Pa55"


class FtpServer:
    def __init__(self, root: Path):
        self.home = root / "bob"
        self.anonymous_home = root / "anon"
        self.home.mkdir()
        self.anonymous_home.mkdir()
        self.connections = 0
        self.commands: list[tuple[str, str]] = []  # (command, argument) of STOR, RNFR, RNTO, MKD, RETR
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(self.home), perm="elradfmwMT")
        with warnings.catch_warnings():  # "write permissions assigned to anonymous user"
            warnings.simplefilter("ignore")
            authorizer.add_anonymous(str(self.anonymous_home), perm="elradfmw")
        server = self

        class Handler(FTPHandler):
            def on_connect(self):
                server.connections += 1

            def pre_process_command(self, line, cmd, arg):
                if cmd in ("STOR", "RNFR", "RNTO", "MKD", "RETR"):
                    server.commands.append((cmd, arg))
                return super().pre_process_command(line, cmd, arg)

        Handler.authorizer = authorizer
        Handler.banner = "test ftpd"
        Handler.auth_failed_timeout = 0.05  # not 3 s per wrong password
        self.handler = Handler
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self.ftpd = FTPServer(("127.0.0.1", 0), Handler)
        self.port = self.ftpd.address[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.ftpd.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        self.ftpd.close_all()

    def start(self) -> FtpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
