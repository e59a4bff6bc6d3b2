from django.urls import path

from labeling.api import views

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("users/", views.UsersView.as_view(), name="api-users"),
    path("projects/", views.ProjectsView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", views.ProjectDetailView.as_view(), name="api-project"),
    path("projects/<int:project_id>/members/", views.MembersView.as_view(), name="api-members"),
    path("projects/<int:project_id>/queue/", views.QueueView.as_view(), name="api-queue"),
    path("projects/<int:project_id>/tasks/next/", views.TaskNextView.as_view(), name="api-task-next"),
    path("projects/<int:project_id>/labels/", views.LabelsView.as_view(), name="api-labels"),
    path("tasks/<int:task_id>/annotations/", views.AnnotationsView.as_view(), name="api-annotations"),
    path("tasks/<int:task_id>/skip/", views.SkipView.as_view(), name="api-skip"),
    path("tasks/<int:task_id>/undo/", views.UndoView.as_view(), name="api-undo"),
    path("tasks/<int:task_id>/review/", views.ReviewDecideView.as_view(), name="api-review-decide"),
    path("projects/<int:project_id>/reviews/", views.ReviewsView.as_view(), name="api-reviews"),
]
