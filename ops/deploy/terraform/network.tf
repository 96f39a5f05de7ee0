data "google_compute_network" "vpc" {
  name = var.network
}

# TOPOLOGY §9: "Subnet for Cloud Run connector: bff-backoffice-connector-asia-south1 (10.20.7.0/28)".
resource "google_compute_subnetwork" "connector" {
  name                     = "bff-backoffice-connector-${var.region}"
  region                   = var.region
  network                  = data.google_compute_network.vpc.id
  ip_cidr_range            = var.connector_cidr
  private_ip_google_access = true
}

# TOPOLOGY §1: "VPC connector: bff-connector-asia-south1" (the name cloudrun/*.yaml use).
resource "google_vpc_access_connector" "bff" {
  name   = "bff-connector-${var.region}"
  region = var.region
  subnet {
    name = google_compute_subnetwork.connector.name
  }
  # Spec silent on connector size: e2-standard-4 carries ~ 3.2 Gbps per instance, enough for
  # 20 instances' upstream fan-out at the §13 peak; 2..10 instances (a /28 holds 16 addresses).
  machine_type  = "e2-standard-4"
  min_instances = 2
  max_instances = 10
}

# Private Service Access (TOPOLOGY §9): Cloud SQL and Memorystore get private IPs on the VPC.
resource "google_compute_global_address" "private_services" {
  count         = var.create_private_service_access ? 1 : 0
  name          = "melmastoon-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 16
  network       = data.google_compute_network.vpc.id
}

resource "google_service_networking_connection" "private_services" {
  count                   = var.create_private_service_access ? 1 : 0
  network                 = data.google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services[0].name]
}
