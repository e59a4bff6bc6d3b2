"""API views: selection. URL patterns are included from feedback/api/urls.py."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
