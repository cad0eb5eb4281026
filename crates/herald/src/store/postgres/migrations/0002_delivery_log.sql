-- Version 2: the delivery log lists a project's deliveries newest first.
CREATE INDEX deliveries_by_project ON deliveries(project_id, id);
CREATE INDEX deliveries_by_webhook ON deliveries(webhook_id, id);
