"""The distribution-spec HTTP client: auth, retries, failover, pagination, manifests, blobs."""
