"""Pages: registry. URL patterns are included from labelloop/urls.py."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
