# TOPOLOGY §4: Cloud SQL Postgres 16, db-custom-2-8192, regional HA, cross-region replica in the
# DR region. §11: RPO 5 min (point-in-time recovery).
resource "google_sql_database_instance" "ledger" {
  name                = "bff-backoffice-db-${var.region}"
  database_version    = "POSTGRES_16"
  region              = var.region
  deletion_protection = var.deletion_protection

  settings {
    tier              = "db-custom-2-8192"
    edition           = "ENTERPRISE"
    availability_type = "REGIONAL" # HA: standby in another zone, failover ~ 60 s (F-20)
    disk_type         = "PD_SSD"
    disk_size         = 50
    disk_autoresize   = true

    ip_configuration {
      ipv4_enabled    = false
      private_network = data.google_compute_network.vpc.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "20:00" # UTC, 01:30 IST
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = 14
      }
    }

    # 20 instances x 2 workers x BFF_DB_POOL_MAX 8 = 320 (cloudrun/service.yaml) + the migrate
    # job + operators (./ops/ledger).
    database_flags {
      name  = "max_connections"
      value = "400"
    }

    insights_config {
      query_insights_enabled = true
    }

    maintenance_window {
      day  = 2 # Tuesday
      hour = 21
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

# DR-warm (§1, §11): promoted by hand in a regional disaster (RTO 30 min).
resource "google_sql_database_instance" "ledger_dr" {
  name                 = "bff-backoffice-db-${var.dr_region}"
  database_version     = "POSTGRES_16"
  region               = var.dr_region
  master_instance_name = google_sql_database_instance.ledger.name
  deletion_protection  = var.deletion_protection

  replica_configuration {
    failover_target = false
  }

  settings {
    tier              = "db-custom-2-8192"
    edition           = "ENTERPRISE"
    availability_type = "ZONAL"
    disk_type         = "PD_SSD"
    disk_autoresize   = true

    ip_configuration {
      ipv4_enabled    = false
      private_network = data.google_compute_network.vpc.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    database_flags {
      name  = "max_connections"
      value = "400"
    }
  }
}

resource "google_sql_database" "bff" {
  name     = "bff_backoffice"
  instance = google_sql_database_instance.ledger.name
}

resource "random_password" "db" {
  length  = 32
  special = false # goes into a URL (secrets.tf)
}

resource "google_sql_user" "bff" {
  name     = "bff"
  instance = google_sql_database_instance.ledger.name
  password = random_password.db.result
}
