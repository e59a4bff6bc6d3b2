"""WSGI entry point: `gunicorn labelloop.wsgi:application`."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelloop.settings")

application = get_wsgi_application()

# The annotators' next -> answer calls on PostgreSQL, ahead of Django (labeling/api/fast.py).
from labeling.api import fast  # noqa: E402

application = fast.wrap(application)

# Import the URLconf (and with it scikit-learn) while the worker boots, not on its first request.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018

# Everything imported so far lives as long as the worker: keep it out of the garbage collector's
# generations, so that collections triggered by requests do not walk scikit-learn's objects.
gc.freeze()
