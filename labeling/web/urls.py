from django.urls import path

from labeling.web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<int:project_id>/label/", views.label_page, name="label"),
    path("projects/<int:project_id>/label/<int:task_id>/answer/", views.label_answer, name="label-answer"),
    path("projects/<int:project_id>/label/<int:task_id>/skip/", views.label_skip, name="label-skip"),
]
