# TOPOLOGY §3: the service calls its upstreams with Google ID tokens minted as this account.
# The upstreams grant it roles/run.invoker in their own Terraform (they own their IAM).
resource "google_service_account" "bff" {
  account_id   = "bff-backoffice-sa"
  display_name = "bff-backoffice-service"
}

locals {
  sa_member = "serviceAccount:${google_service_account.bff.email}"
}

resource "google_project_iam_member" "telemetry" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/cloudtrace.agent",
  ])
  project = var.project_id
  role    = each.value
  member  = local.sa_member
}

# The outbox relay publishes; the subscriber dead-letters.
resource "google_pubsub_topic_iam_member" "publish" {
  for_each = {
    events      = google_pubsub_topic.events.name
    dead_letter = google_pubsub_topic.dead_letter.name
  }
  topic  = each.value
  role   = "roles/pubsub.publisher"
  member = local.sa_member
}

# Attaching a subscription to a topic needs pubsub.topics.attachSubscription on it: the domain
# topics (the instance subscriptions) and the dead-letter topic (the service creates the shared
# dead-letter subscription when it is missing, pubsub.tf).
resource "google_pubsub_topic_iam_member" "consume" {
  for_each = merge(
    { for name, topic in data.google_pubsub_topic.consumed : name => topic.name },
    { (google_pubsub_topic.dead_letter.name) = google_pubsub_topic.dead_letter.name },
  )
  topic  = each.value
  role   = "roles/pubsub.subscriber"
  member = local.sa_member
}

# Each instance creates, pulls from and deletes its own subscriptions (pubsub.tf): no broader
# role than this (roles/pubsub.editor could also delete other teams' subscriptions).
resource "google_project_iam_custom_role" "subscription_owner" {
  role_id     = "bffBackofficeSubscriptionOwner"
  title       = "bff-backoffice instance subscriptions"
  description = "Create, consume and delete the per-instance subscriptions of bff-backoffice-service."
  permissions = [
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
  ]
}

resource "google_project_iam_member" "subscription_owner" {
  project = var.project_id
  role    = google_project_iam_custom_role.subscription_owner.id
  member  = local.sa_member
}

resource "google_secret_manager_secret_iam_member" "generated" {
  for_each  = google_secret_manager_secret.generated
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa_member
}

resource "google_secret_manager_secret_iam_member" "external" {
  for_each  = google_secret_manager_secret.external
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa_member
}
