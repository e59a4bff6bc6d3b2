from django.urls import path

from labeling.web import dashboard, review, views

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<int:project_id>/label/", views.label_page, name="label"),
    path("projects/<int:project_id>/label/next/", views.label_next, name="label-next"),
    path("projects/<int:project_id>/label/<int:task_id>/answer/", views.label_answer, name="label-answer"),
    path("projects/<int:project_id>/label/<int:task_id>/skip/", views.label_skip, name="label-skip"),
    path("projects/<int:project_id>/label/<int:task_id>/undo/", views.label_undo, name="label-undo"),
    path("projects/<int:project_id>/review/", review.review_page, name="review"),
    path("projects/<int:project_id>/review/<int:task_id>/decide/", review.review_decide, name="review-decide"),
    path("projects/<int:project_id>/dashboard/", dashboard.dashboard_page, name="dashboard"),
]
