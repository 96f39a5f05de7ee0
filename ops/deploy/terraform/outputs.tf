output "service_account" {
  description = "serviceAccountName of cloudrun/*.yaml."
  value       = google_service_account.bff.email
}

output "vpc_connector" {
  description = "run.googleapis.com/vpc-access-connector of cloudrun/*.yaml."
  value       = google_vpc_access_connector.bff.id
}

output "database_private_ip" {
  value = google_sql_database_instance.ledger.private_ip_address
}

output "redis_cache_host" {
  value = google_redis_instance.cache.host
}

output "redis_session_host" {
  value = google_redis_instance.session.host
}

output "dead_letter_subscription" {
  description = "The shared dead-letter subscription (runbook platform/dlq-spike, ./ops/bus)."
  value       = google_pubsub_subscription.dead_letter.id
}
