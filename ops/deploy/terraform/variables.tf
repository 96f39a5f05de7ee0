variable "project_id" {
  description = "Google Cloud project of the environment (prod, stage, dev)."
  type        = string
}

variable "region" {
  description = "Primary region (TOPOLOGY §1)."
  type        = string
  default     = "asia-south1"
}

variable "dr_region" {
  description = "DR-warm region: home of the Cloud SQL cross-region replica (TOPOLOGY §1, §4)."
  type        = string
  default     = "europe-west4"
}

variable "network" {
  description = "The shared VPC (TOPOLOGY §9); owned by the platform, looked up, not created."
  type        = string
  default     = "melmastoon-prod-vpc"
}

variable "connector_cidr" {
  description = "Subnet of the Serverless VPC Access connector (TOPOLOGY §9)."
  type        = string
  default     = "10.20.7.0/28"
}

variable "create_private_service_access" {
  description = <<-EOT
    Reserve a range and peer the VPC with Google services (Private Service Access, used by Cloud
    SQL and Memorystore). The VPC has one such peering for all services: leave false when the
    platform already created it, true on a VPC of your own.
  EOT
  type        = bool
  default     = false
}

variable "consumed_topics" {
  description = <<-EOT
    Domain topics the BFF subscribes to (edge/bus/port.py CONSUMED_TOPICS; SERVICE_OVERVIEW §6).
    Other teams own them: they are looked up (a missing one fails the plan) and the service
    account may attach subscriptions to them.
  EOT
  type        = list(string)
  default = [
    "melmastoon.iam",
    "melmastoon.reservation",
    "melmastoon.housekeeping",
    "melmastoon.maintenance",
    "melmastoon.ai",
    "melmastoon.alert",
    "melmastoon.theme",
  ]
}

variable "deletion_protection" {
  description = "Refuse to destroy the database (and the Redis tiers' data) by accident."
  type        = bool
  default     = true
}
