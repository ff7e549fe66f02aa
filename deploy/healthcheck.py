"""Container health check: exit 0 while the tool's /healthz answers 200 on BIND's port."""

import os
import sys
import urllib.request
from urllib.parse import urlsplit

port = os.environ.get("BIND", "127.0.0.1:5000").rsplit(":", 1)[-1]
# The request names the public host: the tool refuses hosts outside TRUSTED_HOSTS.
host = urlsplit(os.environ.get("PUBLIC_BASE_URL") or "http://localhost").hostname
request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": host})
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as e:  # refused, 503, timeout: unhealthy, with the reason in `docker inspect`
    print(f"/healthz: {e}", file=sys.stderr)
    sys.exit(1)
