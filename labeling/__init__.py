"""People labeling data: projects, members, the task queue, annotations, consensus, audits."""
