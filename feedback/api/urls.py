from django.urls import include, path

from feedback.api import views

urlpatterns = [
    path("projects/<int:project_id>/samples/", views.SamplesView.as_view(), name="api-samples"),
    path("projects/<int:project_id>/samples/<path:external_id>/", views.SampleDetailView.as_view(), name="api-sample"),
    path("projects/<int:project_id>/datasets/", views.DatasetsView.as_view(), name="api-datasets"),
    path("projects/<int:project_id>/datasets/prune/", views.DatasetPruneView.as_view(), name="api-datasets-prune"),
    path("projects/<int:project_id>/datasets/<int:version>/", views.DatasetDetailView.as_view(), name="api-dataset"),
    path(
        "projects/<int:project_id>/datasets/<int:version>/tags/",
        views.DatasetTagsView.as_view(),
        name="api-dataset-tags",
    ),
    path(
        "projects/<int:project_id>/datasets/<int:version>/export/",
        views.DatasetExportView.as_view(),
        name="api-dataset-export",
    ),
    path(
        "projects/<int:project_id>/datasets/<int:version>/diff/",
        views.DatasetDiffView.as_view(),
        name="api-dataset-diff",
    ),
    path("projects/<int:project_id>/runs/", views.RunsView.as_view(), name="api-runs"),
    path("runs/<int:run_id>/", views.RunDetailView.as_view(), name="api-run"),
    path("projects/<int:project_id>/models/", views.ModelsView.as_view(), name="api-models"),
    path("projects/<int:project_id>/models/history/", views.AliasHistoryView.as_view(), name="api-model-history"),
    path("projects/<int:project_id>/models/rollback/", views.RollbackView.as_view(), name="api-model-rollback"),
    path("projects/<int:project_id>/models/<int:version>/", views.ModelDetailView.as_view(), name="api-model"),
    path("projects/<int:project_id>/models/<int:version>/promote/", views.PromoteView.as_view(), name="api-promote"),
    path("projects/<int:project_id>/predict/", views.PredictView.as_view(), name="api-predict"),
    path("", include("feedback.api.audit")),
    path("", include("feedback.api.selection")),
]
