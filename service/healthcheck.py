"""Container health check: ``python -m service.healthcheck URL`` exits 0 if URL answers 200 within 2 s."""

from __future__ import annotations

import sys
import urllib.request


def main(argv: list[str] | None = None) -> int:
    url = (argv if argv is not None else sys.argv[1:] or ["http://127.0.0.1:8080/healthz"])[0]
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 0 if r.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
