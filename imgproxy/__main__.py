"""`python -m imgproxy` / `imgproxy`: start the server."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Sequence

from .config import ConfigError, load


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load(sys.argv[1:] if argv is None else argv)
    except ConfigError as e:
        text = str(e)
        if text.startswith("usage:"):
            print(text)
            return 0
        print(f"imgproxy: {text}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if settings.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .pool import start_fork_server  # imported late: --help and bad flags stay fast
    start_fork_server()  # its imports run beside the server's
    from .server.app import StartupError, serve
    try:
        asyncio.run(serve(settings))
    except StartupError as e:
        print(f"imgproxy: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the port is taken
        print(f"imgproxy: cannot start: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
