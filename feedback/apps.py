from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    name = "feedback"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # labeling never imports feedback: feedback plugs itself into labeling's hooks here.
        from feedback import audits, policy
        from feedback.counts import project_counts
        from labeling import events
        from labeling.api import views

        events.on_labels_finalized(policy.on_labels_finalized)
        events.on_labels_finalized(audits.audit_refresh_soon)
        if project_counts not in views.extra_counts:
            views.extra_counts.append(project_counts)
