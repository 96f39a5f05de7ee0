"""Device authentication: DPoP proofs (RFC 9449), iam access tokens, sessions, MFA step-up."""
