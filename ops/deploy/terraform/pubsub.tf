# TOPOLOGY §4 "Pub/Sub topics melmastoon.bff.backoffice.*". What the service does with them
# (edge/bus/pubsub.py):
# - publishes every ledger row (outbox relay) to one topic per subject family, its own being
#   `melmastoon.bff.backoffice` (ordering key: the stream; attribute eventId for dedupe);
# - consumes the domain topics (var.consumed_topics) through one subscription per topic PER
#   INSTANCE, `bff-backoffice.<instance>.<topic>`, which it creates at start (message ordering,
#   expiration TTL = BFF_BUS_SUBSCRIPTION_TTL_S, 1 day) and deletes on a clean shutdown — so no
#   consumer subscription is declared here: instances come and go with autoscaling;
# - dead-letters what it cannot decode or keeps failing to handle to
#   `melmastoon.bff.backoffice.deadletter`, with the source topic, message id and reason.

resource "google_pubsub_topic" "events" {
  name = "melmastoon.bff.backoffice"
  # Spec silent: one day, so a consumer that lost its subscription can seek back a shift.
  message_retention_duration = "86400s"
  labels = {
    service = "bff-backoffice"
  }
}

resource "google_pubsub_topic" "dead_letter" {
  name                       = "melmastoon.bff.backoffice.deadletter"
  message_retention_duration = "604800s"
  labels = {
    service = "bff-backoffice"
  }
}

# F-38 "DLQ 7 d retention; SRE inspects + replays": the one shared subscription every
# instance's dead letters are read through (`./ops/bus dead-letters list|replay`; the name is
# edge/bus/pubsub.py DEAD_LETTER_SUBSCRIPTION). The service also creates it when missing, with
# these same settings; declared here so its retention is reviewed and cannot drift. A replay
# acknowledges what it republished, so acknowledged messages are not kept.
resource "google_pubsub_subscription" "dead_letter" {
  name                       = "bff-backoffice.deadletter"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s" # 7 d
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = "" # never
  }
  labels = {
    service = "bff-backoffice"
  }
}

# Other teams' topics: looked up, so a renamed or missing one fails the plan, not the service.
data "google_pubsub_topic" "consumed" {
  for_each = toset(var.consumed_topics)
  name     = each.value
}
