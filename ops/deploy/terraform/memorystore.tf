# TOPOLOGY §4: two Memorystore (Redis 7) instances, standard tier (standby + auto-failover).
# Reached over Private Service Access from the VPC connector (§9). AUTH on; no in-transit TLS
# (the service's Redis URLs are redis://, private IP only: spec silent, chosen for simplicity).

# Cache tier: dashboard snapshots, workbench views, inboxes, preferences, cursor copies.
# Losing it costs read-through (F-17), so it may evict.
resource "google_redis_instance" "cache" {
  name               = "bff-backoffice-cache-${var.region}"
  display_name       = "bff-backoffice cache tier"
  tier               = "STANDARD_HA"
  memory_size_gb     = 5
  region             = var.region
  redis_version      = "REDIS_7_2"
  authorized_network = data.google_compute_network.vpc.id
  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  auth_enabled       = true

  redis_configs = {
    "maxmemory-policy" = "allkeys-lru"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "TUESDAY"
      # 21:30 UTC = 03:00 IST, the quietest hour at the hotels' desks (spec silent).
      start_time {
        hours   = 21
        minutes = 30
      }
    }
  }

  labels = {
    service = "bff-backoffice"
    tier    = "cache"
  }

  depends_on = [google_service_networking_connection.private_services]
}

# Session tier: sessions, DPoP jti replay keys, device feeds (SSE), revocation markers, rate
# counters. "No eviction" (§4): a full tier must refuse writes, never drop a session or a jti.
resource "google_redis_instance" "session" {
  name               = "bff-backoffice-session-${var.region}"
  display_name       = "bff-backoffice session tier (no eviction)"
  tier               = "STANDARD_HA"
  memory_size_gb     = 3
  region             = var.region
  redis_version      = "REDIS_7_2"
  authorized_network = data.google_compute_network.vpc.id
  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  auth_enabled       = true

  redis_configs = {
    "maxmemory-policy" = "noeviction"
    # The stream hub PSUBSCRIBEs node channels; keyspace events are not used.
  }

  # Sessions survive a double failure of the pair (F-19 says "sessions preserved").
  persistence_config {
    persistence_mode    = "RDB"
    rdb_snapshot_period = "ONE_HOUR"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "WEDNESDAY"
      start_time {
        hours   = 21
        minutes = 30
      }
    }
  }

  labels = {
    service = "bff-backoffice"
    tier    = "session"
  }

  depends_on = [google_service_networking_connection.private_services]
}
