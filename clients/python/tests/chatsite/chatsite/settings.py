"""The Channels tutorial's chatsite after its move to herald.

Gone: daphne / ASGI_APPLICATION, chat/consumers.py, chat/routing.py, channels_redis.
Kept: views that group_send, now through HeraldChannelLayer.
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "chatsite-test-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["chat"]
MIDDLEWARE = ["django.middleware.csrf.CsrfViewMiddleware"]
ROOT_URLCONF = "chatsite.urls"
WSGI_APPLICATION = "chatsite.wsgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = {}
USE_TZ = True

# Where Django reaches herald, and where browsers do (behind a proxy these differ).
HERALD_URL = os.environ["HERALD_URL"]
HERALD_PUBLIC_WS_URL = os.environ.get("HERALD_PUBLIC_WS_URL", HERALD_URL.replace("http", "ws", 1))
HERALD_JWT_SECRET = os.environ["HERALD_JWT_SECRET"]

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "herald_client.channels.HeraldChannelLayer",
        "CONFIG": {"url": HERALD_URL, "jwt_secret": HERALD_JWT_SECRET},
    }
}
