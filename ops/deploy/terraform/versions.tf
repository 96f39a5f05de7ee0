# Stateful dependencies of bff-backoffice-service (DEPLOYMENT_TOPOLOGY §4, §9) and its identity.
# The Cloud Run service and migrate job themselves are the manifests in ../cloudrun (§8: "Cloud
# Run Service YAML: sizing, scaling, VPC connector"), applied with gcloud after this.
terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }

  # State in GCS; the bucket is per environment: terraform init -backend-config=bucket=...
  backend "gcs" {
    prefix = "bff-backoffice-service"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
