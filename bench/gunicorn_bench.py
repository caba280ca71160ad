"""gunicorn settings for the benchmark: the project's own ``gunicorn.conf.py``, access log off.

``GUNICORN_ACCESSLOG=""`` makes gunicorn fail ("'' isn't writable"), so the bench loads the
project's file and switches the access log off here instead.
"""

import runpy
from pathlib import Path

_project = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update({k: v for k, v in _project.items() if not k.startswith("__")})

accesslog = None
# No control socket: gunicorn's default path is shared by every gunicorn of this user, and the
# bench must not take it over from a server someone else is running.
control_socket_disable = True
