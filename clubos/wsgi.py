import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clubos.settings")

application = get_wsgi_application()

# Every process that serves requests (gunicorn workers, runserver) trains the router and
# builds the OpenAI client now, not on its first request.
from clubos.warmup import warm_up  # noqa: E402

warm_up()
