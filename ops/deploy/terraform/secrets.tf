# TOPOLOGY §4/§8: secrets in Secret Manager (replicated), mounted as files by the Cloud Run
# manifests (cloudrun/*.yaml: /secrets/<name>/value).
locals {
  # for_each needs keys that are not sensitive; the values (passwords, AUTH strings) are.
  generated_secret_names = toset([
    "bff-backoffice-database-url",
    "bff-backoffice-redis-session-url",
    "bff-backoffice-redis-cache-url",
  ])
  # Written by Terraform: derived from the resources it creates (the values are in the state,
  # which therefore lives in a locked-down bucket).
  generated_secrets = {
    "bff-backoffice-database-url"      = "postgresql://${google_sql_user.bff.name}:${random_password.db.result}@${google_sql_database_instance.ledger.private_ip_address}:5432/${google_sql_database.bff.name}?sslmode=require"
    "bff-backoffice-redis-session-url" = "redis://:${google_redis_instance.session.auth_string}@${google_redis_instance.session.host}:${google_redis_instance.session.port}/0"
    "bff-backoffice-redis-cache-url"   = "redis://:${google_redis_instance.cache.auth_string}@${google_redis_instance.cache.host}:${google_redis_instance.cache.port}/0"
  }
  # Topology-named secrets whose values never pass through Terraform: add a version with
  # `gcloud secrets versions add <name> --data-file=-` (ops/deploy/README.md).
  external_secrets = ["bff-backoffice-pepper", "bff-backoffice-sse-signing-key"]
}

resource "google_secret_manager_secret" "generated" {
  for_each  = local.generated_secret_names
  secret_id = each.key
  replication {
    auto {}
  }
  labels = {
    service = "bff-backoffice"
  }
}

resource "google_secret_manager_secret_version" "generated" {
  for_each    = local.generated_secret_names
  secret      = google_secret_manager_secret.generated[each.key].id
  secret_data = local.generated_secrets[each.key]
}

resource "google_secret_manager_secret" "external" {
  for_each  = toset(local.external_secrets)
  secret_id = each.value
  replication {
    auto {}
  }
  labels = {
    service = "bff-backoffice"
  }
}
